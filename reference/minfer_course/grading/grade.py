"""Grade submissions of one lab: a sandbox each, `jobs` at a time; one student's trouble never
stops the batch."""
from __future__ import annotations

import tempfile
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..labs import REPO
from .bundle import Bundle, build_bundle
from .config import LabGrading, Limits, Scope
from .results import SubmissionResult
from .sandbox import Isolation, instantiate, remove, run
from .score import score
from .submission import Submission


@dataclass(frozen=True)
class GradingRun:
    """What a batch shares: the bundle, the limits, how processes are isolated, where it all lives."""

    bundle: Bundle
    limits: Limits
    isolation: Isolation
    work: Path  # holds the bundle and every sandbox of this run
    protected: tuple[Path, ...]  # what no test process may read: the repository, the course folder
    scope: Scope = Scope()

    def grade(self, submission: Submission) -> SubmissionResult:
        box = None
        try:
            box = instantiate(self.bundle, submission, Path(tempfile.mkdtemp(prefix="box-", dir=self.work)) / "s")
            raw = run(self.bundle, box, self.limits, self.isolation, [*self.protected, self.work], self.scope)
            return score(self.bundle, submission, box, raw, self.limits, self.scope)
        except Exception:  # noqa: BLE001 - a grader bug must not cost other students their grade
            return SubmissionResult(self.bundle.grading.name, submission.student, submission.digest,
                                    self.bundle.digest, "setup error",
                                    (f"grading failed inside the grader: {traceback.format_exc(limit=3)[-800:]}",),
                                    (), 0.0, self.scope.label)
        finally:
            if box is not None:
                remove(box)
                box.root.parent.rmdir()


def start(grading: LabGrading, released_notebook: Path | None, work: Path, jobs: int, model_store: Path,
          protected: Iterable[Path] = (), limits: Limits | None = None, scope: Scope = Scope()) -> GradingRun:
    """Build the bundle under `work` (which the caller creates and removes)."""
    bundle = build_bundle(grading, released_notebook, work / "bundle")
    return GradingRun(bundle, limits or grading.limits, Isolation.probe(jobs, model_store), work,
                      (REPO, *protected), scope)


def grade_all(run_: GradingRun, submissions: list[Submission], jobs: int,
              done: Callable[[SubmissionResult], None] = lambda r: None) -> list[SubmissionResult]:
    """Grade in parallel; `done` sees each result as it arrives (to save it, to print progress)."""
    def one(sub: Submission) -> SubmissionResult:
        result = run_.grade(sub)
        done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, submissions))
