"""pyro_vaegap.papers against the paper texts in ../shared/papers: every recorded number is found in its
table's region of the text, in its row and column, and equals the record (a mistyped number fails).

The locators below parse the text conversion independently of the module's transcription: a table's
region is cut out by markers of the text, its row found by the label as the text prints it, its
column by position. Tests that need the texts skip when ../shared/papers is absent.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pyro_vaegap import papers
from pyro_vaegap.utils import ConfigError

PAPERS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "papers"
FILES = {"cremer2018": "cremer2018_inference_suboptimality.txt", "cremer2018_poster": "cremer2018_poster.txt",
         "zhao2019": "zhao2019_infovae.txt", "kim2021": "kim_pavlovic_gpvae.txt", "yu2020": "yu2020_vae_tutorial.txt"}
needs_texts = pytest.mark.skipif(not PAPERS_DIR.is_dir(), reason="the paper texts (../shared/papers) are absent")
NUMBER = r"-?\d+(?:\.\d+)?"

_texts: dict[str, str] = {}


def text(paper: str) -> str:
    if paper not in _texts:
        _texts[paper] = (PAPERS_DIR / FILES[paper]).read_text()
    return _texts[paper]


def region(paper: str, start: str, end: str | None) -> str:
    t = text(paper)
    i = t.index(start)
    return t[i:] if end is None else t[i:t.index(end, i)]


# --- Cremer et al.: tab-separated rows, the label in the first cell -------------------------------
CREMER_REGIONS = {"2": ('<span id="page-5-0"></span>', "Table 2: Inference Gaps"),
                  "3": ("Table [3](#page-5-1) are the results", "Table 3: Larger Encoder"),
                  "5": ("Generator Hidden Layers", "Table 5: Increased"),
                  "6": ('<span id="page-7-1"></span>', "Table 6: Models"),
                  "10": ("To analyze the capability", "Table 10: Gaussian")}
CREMER_ROWS = {"log_px": r"\\log \\hat\{p\}\(x\)", "local:flow": r"q\^\{?\*\}?_\{Flow\}",
               "local:ffg": r"q\^\{?\*\}?_\{FFG\}", "amortized": r"\\mathcal\{L\}_\{(\\text\{VAE\}|VAE)\}\s*\[?q\]?\s*\$",
               "approximation": r"Approximation", "amortization": r"^Amortization", "inference": r"^Inference"}
# numbers quoted in the running text: entry id → a pattern whose group is the number
SNIPPETS = {
    "cremer2018:§6.6:inference:mnist/ffg": r"inference gap on the training set with the FFG model is (\S+) nats",
    "cremer2018:§6.6:inference:mnist/flow": r"whereas the Flow model is (\S+) nats",
    "cremer2018:§5.3:local:flow-local:ffg:mnist/ffg": r"Optimal FFG for the FFG trained model by (\S+) nats",
    "cremer2018:§5.3:local:flow-local:ffg:mnist/flow": r"the difference increases to (\S+) nats",
    "yu2020:§4.2:raw:bits_per_dim": r"describing the raw pixel values only requires (\d+) bits/dim",
    "yu2020:§4.2:sota:bits_per_dim": r"require a little less than (\d+) bits/dim",
    "yu2020:§5.1:mse:value": r"achieved a\s+\$MSE\$\s+of roughly (\S+), which",
    "yu2020:§5.1:pixel_error:value": r"off by an average of roughly (\d+) pixel values",
    "yu2020:§5.1:reconstruction_bits:value": r"an average of around (\S+) bits just to describe",
    "yu2020:§5.1:sota_vae:value": r"of around (\S+) bits per pixel",
}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("\t")]


def _row_line(lines, pattern, what):
    hits = [ln for ln in lines if re.search(pattern, _cells(ln)[0])]
    assert len(hits) == 1, f"{what}: {len(hits)} lines match {pattern!r}"
    return hits[0]


def _number(cell: str, index: int = 0) -> str:
    nums = re.findall(NUMBER, re.sub(r"</?b>|<sup>|</sup>", " ", cell))
    return nums[index]


def locate(e: papers.Published) -> str:
    """The number at ``e``'s place in the paper text, as printed."""
    if e.id in SNIPPETS:
        m = re.search(SNIPPETS[e.id], text(e.paper))
        assert m, e.id
        return m.group(1).rstrip(".,")
    cols = [c for c, _ in e.table_info.columns]
    j = cols.index(e.column)
    if e.paper == "cremer2018":
        lines = [ln for ln in region("cremer2018", *CREMER_REGIONS[e.table]).splitlines() if "\t" in ln]
        cells = _cells(_row_line(lines, CREMER_ROWS[e.row], e.id))
        data = [c for c in cells[1:] if c]  # Table 5 leaves empty cells after the numbers
        return _number(data[j])
    if e.paper == "cremer2018_poster":
        body = region("cremer2018_poster", "Experimental Results", "Table 1: Lower bounds")
        starts = {"log_px": "log p̂(x)", "local:flow": "Flow]", "local:ffg": "FFG]", "amortized": "LVAE[q]",
                  "approximation": "Approximation", "amortization": "Amortization", "inference": "Inference Gap"}
        line = [ln for ln in body.splitlines() if ln.startswith(starts[e.row] + " ")]
        assert len(line) == 1, e.id
        return re.findall(NUMBER + r"(?=\s|$)", line[0][len(starts[e.row]):])[j]
    if e.paper == "zhao2019":
        lines = region("zhao2019", "Log likelihood estimate", "uate the performance").splitlines()
        labels = {"elbo": "ELBO", "mmd": "MMD-VAE", "stein": "Stein-VAE", "adversarial": "Adversarial VAE"}
        i = [k for k, ln in enumerate(lines) if ln.strip() == labels[e.row]]
        assert len(i) == 1, e.id
        return lines[i[0] + 1].strip()
    if e.paper == "kim2021":
        bounds = {"1": ("Table 1. (MNIST)", "tightly cropped"), "2": ("Table 2. (OMNIGLOT)", "## 5.1"),
                  "3": ("Table 3. (SVHN)", "Figure 1."), "4": ("Table 4. (CelebA)", "## 5.2"),
                  "9": ("Table 9. (CIFAR10)", "by decoder linearization"), "5": ("Table 5. (Per-batch)", "updates, with"),
                  "10": ("Table 10. (Fully", "Table 11."), "11": ("Table 11. (Fully", None)}[e.table]
        lines = [ln for ln in region("kim2021", *bounds).splitlines() if "\t" in ln]
        label = re.escape(e.row).replace(r"\(", r"\s*(?:<sup>)?\(").replace(r"\)", r"\)(?:</sup>)?")
        cells = _cells(_row_line(lines, "^" + label + "$", e.id))
        if e.table in ("10", "11"):  # "FC (conv)": the column's architecture picks the number in the cell
            cell = cells[1 + j // 2]
            nums = re.findall(NUMBER, cell)
            k = 0 if e.column.endswith("/fc") else 1
            return nums[k] if k < len(nums) else "–"
        return _number(cells[1 + j])
    if e.paper == "yu2020":
        start = {"1": "Dataset\t$H$\t-ELBO\tNLL", "2": "Dataset\t$H$\tLoss\tNLL"}[e.table]
        lines = [ln for ln in region("yu2020", start, f"Table {e.table}:").splitlines() if "\t" in ln]
        cells = _cells(_row_line(lines, "^" + re.escape(e.row_label) + "$", e.id))
        return _number(cells[1 + j])
    raise AssertionError(f"no locator for {e.id}")


def check(e: papers.Published) -> None:
    """``e`` matches the text: its printed form is what the text prints there, and its value is that number
    (or the note says why not: a garbled conversion)."""
    found = locate(e)
    assert found == e.printed, f"{e.id}: the text prints {found!r}, the record {e.printed!r}"
    if float(found) != e.value:
        assert "printed" in e.note, f"{e.id}: value {e.value} differs from the text's {found} without a note"


ALL = papers.entries()


@needs_texts
@pytest.mark.parametrize("table", [t.id for t in papers.tables()])
def test_every_entry_matches_the_paper_text(table):
    paper, tab = table.split(":", 1)
    es = papers.entries(paper, tab)
    for e in es:
        check(e)
    if not es:  # a table without numbers must be one whose body the text lacks
        assert "missing" in papers.table_info(paper, tab).note


@needs_texts
def test_every_cremer_table2_entry_is_checked():
    es = papers.entries("cremer2018", "2")
    assert len(es) == 7 * 6  # every row of every column (MNIST, Fashion-MNIST, CIFAR-10; FFG and flow)
    for e in es:
        check(e)


@needs_texts
def test_a_mistyped_number_fails():
    """The check is not an identity: changing one digit of a value, or its printed form, is caught."""
    for e in (papers.get("cremer2018", "2", "amortization", "mnist/ffg"), papers.get("kim2021", "1", "GPVAE", "dim_z=50"),
              papers.get("zhao2019", "1", "mmd", "nll"), papers.get("yu2020", "2", "2spirals", "nll")):
        bad = dataclasses.replace(e, value=e.value + 0.01, printed=f"{e.value + 0.01:.2f}")
        with pytest.raises(AssertionError):
            check(bad)
        with pytest.raises(AssertionError):  # the right printed form with a wrong value and no note
            check(dataclasses.replace(e, value=e.value + 0.01))
    # a number at another column's place fails too
    e = papers.get("cremer2018", "2", "log_px", "mnist/ffg")
    with pytest.raises(AssertionError):
        check(dataclasses.replace(e, column="mnist/flow"))


@needs_texts
def test_table4_body_is_missing_from_the_text():
    """Table 4 holds no numbers because the text has none between its paragraph and its caption."""
    t = text("cremer2018")
    i = t.index("also play a large role in diminishing the amortization error.")
    j = t.index("Table 4: Influence of Flows")
    assert not re.search(r"\d+\.\d{2}", t[i:j])
    assert papers.entries("cremer2018", "4") == []


def test_cremer_gap_rows_are_differences_of_the_bound_rows():
    """An independent transcription check: Approximation = log p̂ − L[q*_family], Amortization = L[q*] − L[q],
    Inference = their sum, to the rounding of two-decimal numbers — except Table 5, where the paper prints
    |log p̂ − L[q*]| for the 2- and 4-layer decoders (the note says so)."""
    for paper, tab in (("cremer2018", "2"), ("cremer2018", "3"), ("cremer2018", "6"), ("cremer2018_poster", "1")):
        for col, _ in papers.table_info(paper, tab).columns:
            v = papers.gap_values(paper, tab, col)
            fam = col.rsplit("/", 1)[-1]
            assert v[f"approximation:{fam}"] == pytest.approx(v["log_px"] - v[f"local:{fam}"], abs=0.021), (tab, col)
            assert v["inference"] == pytest.approx(v["log_px"] - v["amortized"], abs=0.021), (tab, col)
            amort = v[f"local:{fam}"] - v["amortized"]
            if (paper, tab, col) == ("cremer2018", "6", "fashion_mnist/flow"):  # the paper's misprint, noted
                assert v[f"amortization:{fam}"] == 2.29 and amort == pytest.approx(2.99)
                assert "misprint" in papers.get(paper, tab, "amortization", col).note
                continue
            assert v[f"amortization:{fam}"] == pytest.approx(amort, abs=0.021), (tab, col)
    t5 = {c: papers.gap_values("cremer2018", "5", c) for c in ("decoder0", "decoder2", "decoder4")}
    assert t5["decoder0"]["approximation:ffg"] == pytest.approx(t5["decoder0"]["log_px"] - t5["decoder0"]["local:ffg"])
    for c in ("decoder2", "decoder4"):
        assert t5[c]["approximation:ffg"] == pytest.approx(abs(t5[c]["log_px"] - t5[c]["local:ffg"]))
    assert "inconsistent" in papers.table_info("cremer2018", "5").note


def test_lookups_and_metadata():
    e = papers.get("cremer2018", "2", "approximation", "mnist/ffg")
    assert e.value == 1.43 and e.units == "nats" and e.key == ("cremer2018", "2", "approximation", "mnist/ffg")
    assert "first 1000 training images" in e.protocol and "test" not in e.protocol.split("not test images")[0]
    assert "Adam eps = 1e-4" in e.protocol and "3280 epochs" in e.protocol and "min(1, epoch/400)" in e.protocol
    assert papers.parse_id("cremer2018:2:local:ffg:mnist/flow").value == -113.54
    assert papers.value("cremer2018", "5", "approximation", "decoder2") == 1.83
    assert papers.get("cremer2018", "5", "approximation", "decoder2").printed == "183"
    assert papers.get("kim2021", "1", "HF(2)", "dim_z=50").sd == 10.8
    assert len(papers.entries("kim2021", "1")) == 22 * 3
    assert papers.gap_values("cremer2018", "2", "mnist/flow") == {
        "log_px": -88.94, "local:flow": -90.38, "local:ffg": -113.54, "amortized": -91.79,
        "approximation:flow": 1.44, "amortization:flow": 1.41, "inference": 2.85}
    with pytest.raises(ConfigError, match="choose one of"):
        papers.table_info("cremer2018", "7")
    with pytest.raises(ConfigError, match="rows"):
        papers.get("cremer2018", "2", "log_px", "mnist")
    with pytest.raises(ConfigError, match="empty cell"):
        papers.get("kim2021", "10", "VLAE(1)", "mnist/dim_z=10/conv")
    with pytest.raises(ConfigError, match="not a gap table"):
        papers.gap_values("kim2021", "1", "dim_z=10")


def test_comparison_row_pairs_only_comparable_numbers():
    e = papers.get("zhao2019", "1", "elbo", "nll")
    row = papers.comparison_row(e, -101.60, 2.12, scale=-1, label="ELBO")
    assert row == "| ELBO | 82.75 | 101.60 ± 2.12 | +18.85 | `zhao2019:1:elbo:nll` |"
    row = papers.comparison_row("cremer2018:2:amortization:mnist/ffg", 3.37, comparable=False,
                                why="ours on test points")
    assert "| 1.34 | 3.37 | not paired: ours on test points |" in row
    assert papers.COMPARISON_HEADER.splitlines()[0].count("|") == row.count("|")


def test_cli(capsys):
    assert papers.main(["--table", "cremer2018:2"]) == 0
    out = capsys.readouterr().out
    assert "−14976.57" in out and "first 1000 training images" in out
    assert papers.main(["--table", "cremer2018:99"]) == 2
    assert "no published table cremer2018:99" in capsys.readouterr().err
    assert papers.main(["--list"]) == 0


def test_gaps_papers_come_from_papers_module():
    from pyro_vaegap import gaps
    col = gaps.PAPERS["cremer2018_table2_mnist_ffg"]
    assert col.values == papers.gap_values("cremer2018", "2", "mnist/ffg")
    assert "first 1000 training images" in col.settings and "1000 test points" not in col.settings
    assert gaps.PAPERS["cremer2018_table5_mnist_2_layers"].values == {"approximation:ffg": 1.83}


DOCS = Path(__file__).resolve().parents[1] / "docs"


def _paper_tables_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_paper_tables", DOCS / "make_paper_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_paper_tables_are_what_the_generator_writes():
    """docs/results/paper_tables/*.md equal what docs/make_paper_tables.py writes from papers.py and the
    results files now: the docs cannot drift from either."""
    frags = _paper_tables_module().all_fragments()
    folder = DOCS / "results" / "paper_tables"
    assert sorted(p.stem for p in folder.glob("*.md")) == sorted(frags)
    for name, text in frags.items():
        assert (folder / f"{name}.md").read_text() == text, f"{name}.md is stale: run python docs/make_paper_tables.py"


def test_docs_numbers_citing_an_entry_equal_it():
    """A number written in the docs followed by its entry id, ``1.43 (``cremer2018:2:...``)``, is that entry's
    value, and every fully named entry id the docs cite exists."""
    cited = 0
    for page in DOCS.glob("*.rst"):
        s = page.read_text()
        for m in re.finditer(r"(−?\d+(?:\.\d+)?)\s*\(``([a-z0-9_]+:[^`\s]+)``\)", s):
            e = papers.parse_id(m.group(2))
            assert float(m.group(1).replace("−", "-")) == e.value, (page.name, m.group(0))
            cited += 1
        for m in re.finditer(r"``((?:cremer2018|cremer2018_poster|zhao2019|kim2021|yu2020):[^`\s]+)``", s):
            if not re.search(r"[A-Z]{3,}|\*", m.group(1)):  # ROW, COLUMN, MODEL: placeholders
                papers.parse_id(m.group(1))
    assert cited >= 10
