#!/usr/bin/env python
"""Why the weighted-sum probe scores below the best layer: learned vs frozen-uniform layer weights.

Fits the SUPERB weighted-sum probe (deepwide.probing.weighted, the defaults `deepwide probe`
uses) on one task of one store four ways — as is; with the layer weights frozen at uniform;
on per-layer standardised features; both — and prints test accuracy, dev accuracy and the
three heaviest layers with their weights. docs/study.md quotes it for the teacher and its random twin on `sid`.

Usage: .venv/bin/python scripts/ws-probe-diagnosis.py STORE [TASK]   (TASK default: sid)
"""

from __future__ import annotations

import sys

import numpy as np

from deepwide.probing import weighted
from deepwide.probing.run import ProbeConfig, load_task_layers
from deepwide.probing.tasks import TASKS
from deepwide.store import open_store


def main(store: str, task: str) -> None:
    ds = open_store(store)
    data = TASKS.get(task).prepare(ds, ProbeConfig().prepare_options(0))
    feats = load_task_layers(data, ds, f"{task}: reading")
    y = {s: getattr(data, s).labels for s in ("train", "dev", "test")}

    def run(name: str, x: dict[str, np.ndarray], frozen: bool) -> None:
        ws = weighted.fit_weighted_sum(x["train"], y["train"], len(data.classes), x_dev=x["dev"], y_dev=y["dev"],
                                       seed=0, freeze_layer_weights=frozen)
        acc = float((ws.logits(x["test"]).argmax(1).numpy() == y["test"]).mean())
        top = "uniform" if frozen else ", ".join(f"{i} ({ws.weights[i]:.2f})" for i in np.argsort(ws.weights)[::-1][:3])
        print(f"{name:42s} test {acc:.3f}  dev {ws.dev_accuracy:.3f}  heaviest layers: {top}")

    mu = feats["train"].mean(1, keepdims=True)
    sd = feats["train"].std(1, keepdims=True) + 1e-5
    std = {s: (v - mu) / sd for s, v in feats.items()}
    print(f"{ds.attrs.get('model_id')} · {task}: {feats['train'].shape[0]} layers, n_train {len(y['train'])}")
    run("learned layer weights (deepwide probe)", feats, frozen=False)
    run("uniform layer weights (frozen)", feats, frozen=True)
    run("standardised layers, learned weights", std, frozen=False)
    run("standardised layers, uniform weights", std, frozen=True)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(f"usage: {sys.argv[0]} STORE [TASK]")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else "sid")
