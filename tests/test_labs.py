"""The course's own guarantees, for every lab: skeletons are generated and current; the reference
passes every public and hidden test; the untouched skeleton fails every one; each known-wrong
solution fails at least one hidden test, and some pass the whole public suite (so the hidden suite
visibly adds value)."""
from __future__ import annotations

import pytest

from minfer_course.labs import LABS
from minfer_course.runner import materialize_wrong_solution, run_suites, wrong_solution_specs
from minfer_course.skeletons import strip_solutions, write_skeletons

LAB_NAMES = sorted(LABS)


def test_committed_skeletons_are_current():
    stale = write_skeletons(check=True)
    assert not stale, f"regenerate with `minfer lab skeletons`: {stale}"


def test_strip_solutions_inside_functions_and_class_bodies():
    src = "class A:\n    def f(self):\n        x = 1\n        ### BEGIN SOLUTION  hint: add one\n        x += 1\n" \
          "        ### END SOLUTION\n        return x\n\n    ### BEGIN SOLUTION\n    def g(self):\n        pass\n    ### END SOLUTION\n"
    out = strip_solutions(src)
    assert "x += 1" not in out and "def g" not in out
    assert "raise NotImplementedError('add one')" in out and "x = 1" in out and "return x" in out
    compile(out, "skeleton", "exec")
    with pytest.raises(ValueError, match="without END"):
        strip_solutions("def f():\n    ### BEGIN SOLUTION\n    pass\n")


@pytest.mark.slow
@pytest.mark.parametrize("lab", LAB_NAMES)
def test_reference_passes_every_test(lab):
    outcomes = run_suites(LABS[lab], "reference")
    failed = [f"{o.suite}::{o.name}: {o.message[:200]}" for o in outcomes if not o.passed]
    assert outcomes and not failed, failed
    assert {o.suite for o in outcomes} == {"tests", "hidden"}


@pytest.mark.slow
@pytest.mark.parametrize("lab", LAB_NAMES)
def test_untouched_skeleton_fails_every_test(lab):
    outcomes = run_suites(LABS[lab], "student")
    passed = [f"{o.suite}::{o.name}" for o in outcomes if o.passed]
    assert outcomes and not passed, f"these tests cannot fail: {passed}"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LAB_NAMES)
def test_wrong_solutions_are_caught(lab, tmp_path):
    specs = wrong_solution_specs(LABS[lab])
    assert len(specs) >= 8
    hidden_only = []
    for spec in specs:
        materialize_wrong_solution(LABS[lab], spec, tmp_path / spec.stem)
        # the engine-level tests are left out here: each mistake must be caught by a unit test
        outcomes = run_suites(LABS[lab], tmp_path / spec.stem, extra=("-m", "not slow"))
        assert any(not o.passed for o in outcomes if o.suite == "hidden"), f"{spec.stem} passes the hidden suite"
        if all(o.passed for o in outcomes if o.suite == "tests"):
            hidden_only.append(spec.stem)
    print(f"\n{lab}: caught only by the hidden suite: {hidden_only}")
    assert len(hidden_only) >= 3, hidden_only


@pytest.mark.slow
def test_chat_through_every_lab_reference_is_token_identical(capsys, monkeypatch, smollm2):
    """`minfer chat --lab ...` with the reference solutions says exactly what the default engine says:
    the lab switches change whose code runs, never the result."""
    import io
    import sys

    from minfer.cli import main

    replies = []
    for labs in ([], [f"--lab={name}=reference" for name in LAB_NAMES]):
        monkeypatch.setattr(sys, "stdin", io.StringIO("What is a KV cache?\nAnd what is a block table?\n"))
        assert main(["chat", "--max-tokens", "40", *labs]) == 0
        replies.append(capsys.readouterr().out)
    assert replies[0].strip() and replies[0] == replies[1]
