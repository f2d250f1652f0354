"""The experiment harness: what every experiment (``experiments/``) and every ``vaegap`` command share.

========================================  ==================================================================
:mod:`~pyro_vaegap.harness.options`       options and profiles declared as data (:class:`Profiles`), the
                                          one-line-error :class:`Parser`, :func:`make_parser`, :func:`parse_args`
:mod:`~pyro_vaegap.harness.errors`        the one error path: one line and exit status 2 (:func:`run_command`,
                                          :func:`run_main`), closed pipes, SIGTERM
:mod:`~pyro_vaegap.harness.runs`          training runs reused when finished, resumed when interrupted
                                          (:func:`train_run`), :class:`Progress`
:mod:`~pyro_vaegap.harness.evaluate`      ELBO / IWAE summary of a model on held-out data (:func:`evaluate`)
:mod:`~pyro_vaegap.harness.gap_runs`      gap reports as commands make them (:func:`run_gaps`), which points
                                          are evaluated (:func:`evaluation_data`)
:mod:`~pyro_vaegap.harness.results`       ``results.json`` + ``results.md`` + figures written atomically with
                                          provenance (:func:`write_results`), the paper-comparison table
========================================  ==================================================================

An experiment module is then its science and its settings::

    PROFILES = Profiles({"quick": {"epochs": 2}, "cpu": {"epochs": 50}}, {"epochs": Setting(int, "epochs")})

    def main(argv=None):
        args = parse_args(make_parser(NAME, __doc__, PROFILES), argv, profiles=PROFILES)
        model, guide, _ = train_run(config(args), Path(args.out) / "run", Progress(args.quiet), args.device)
        write_results(args.out, NAME, args, results, markdown, seconds)

    if __name__ == "__main__":
        run_main(main)
"""
from .errors import USER_ERRORS, run_command, run_main, user_error
from .evaluate import LN2, evaluate
from .gap_runs import EVAL_SPLITS, check_output_stem, evaluation_data, paper_settings, run_gaps
from .options import Parser, Profiles, Setting, check_numbers, common_options, device_option, make_parser, parse_args
from .results import (duration, fmt, json_clean, markdown_table, options_markdown, paper_table, plain, rewrite_page,
                      save_figure, write_results)
from .runs import Progress, finished_run, train_run, training_cost

__all__ = ["USER_ERRORS", "run_command", "run_main", "user_error", "LN2", "evaluate", "EVAL_SPLITS",
           "check_output_stem", "evaluation_data", "paper_settings", "run_gaps", "Parser", "Profiles", "Setting",
           "check_numbers", "common_options", "device_option", "make_parser", "parse_args", "duration", "fmt",
           "json_clean", "markdown_table", "options_markdown", "paper_table", "plain", "rewrite_page",
           "save_figure", "write_results", "Progress", "finished_run", "train_run", "training_cost"]
