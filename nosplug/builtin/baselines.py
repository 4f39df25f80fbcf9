"""Built-in plugin: the baseline sets nosplug ships (registered through ``nosplug_baseline_sets``).

``modern``: what people pick between today, each tuned over its learning rate, warm-up and the
hyperparameters listed (ranges: ``nosplug.benchmark.contenders.EXTRA_TUNING``), with its recipe:

* AdamW (``torch:AdamW``);
* NAdamW, AlgoPerf v0.6's baseline (``torch:NAdam(decoupled_weight_decay=True)``, warm-up and
  cosine decay, as AlgoPerf runs it);
* Lion (Chen et al. 2023), SOAP (Vyas et al. 2024, Shampoo's preconditioner with Adam in its
  eigenbasis) and Schedule-Free AdamW (Defazio et al. 2024) from pytorch-optimizer;
* Muon (Jordan et al. 2024; ``torch.optim.Muon``) on the 2-D weights with AdamW on the rest.

``algoperf``: NAdamW alone, AlgoPerf's baseline.
"""

from __future__ import annotations

from nosplug.baselines import INSTALL_HINT, Baseline, BaselineSet
from nosplug.baselines.recipes import MUON_RECIPE, SCHEDULE_FREE_RECIPE
from nosplug.hookspecs import hookimpl

_COSINE = "warm-up, then cosine decay to 0"
_PYTORCH_OPTIMIZER = (("pytorch_optimizer", INSTALL_HINT),)
_TORCH_MUON = (("torch.optim:Muon", "torch >= 2.9"),)

ADAMW = Baseline("torch:AdamW", ("beta1", "beta2", "weight_decay"), _COSINE)
NADAMW = Baseline(
    "torch:NAdam(decoupled_weight_decay=True)",
    ("beta1", "beta2", "weight_decay"),
    f"NAdamW, AlgoPerf's baseline; {_COSINE}",
)
LION = Baseline("pytorch_optimizer:Lion", ("beta1", "beta2", "weight_decay"), _COSINE, _PYTORCH_OPTIMIZER)
SOAP = Baseline("pytorch_optimizer:SOAP", ("beta1", "beta2", "weight_decay"), _COSINE, _PYTORCH_OPTIMIZER)
SCHEDULE_FREE = Baseline(
    "pytorch_optimizer:ScheduleFreeAdamW", ("beta1", "weight_decay"), SCHEDULE_FREE_RECIPE, _PYTORCH_OPTIMIZER
)
MUON = Baseline("nosplug.baselines:MuonAdamW", ("momentum", "weight_decay"), MUON_RECIPE, _TORCH_MUON)

SETS = (
    BaselineSet(
        "modern",
        (ADAMW, NADAMW, LION, SCHEDULE_FREE, SOAP, MUON),
        "AdamW, NAdamW (AlgoPerf), Lion, Schedule-Free AdamW, SOAP and Muon with AdamW, each with its "
        "own extra hyperparameters tuned and its recipe",
    ),
    BaselineSet("algoperf", (NADAMW,), "NAdamW with warm-up and cosine decay, AlgoPerf v0.6's baseline"),
)


@hookimpl
def nosplug_baseline_sets() -> list[BaselineSet]:
    return list(SETS)
