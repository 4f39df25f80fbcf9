"""The one optimizer-reference parser (nosplug.refs) and its readers: contenders, teachers."""

from __future__ import annotations

import pytest
import torch

from nosplug.refs import OptimizerRef, RefError, parse_ref


@pytest.mark.parametrize(
    ("text", "kind", "target", "name", "rank", "kwargs"),
    [
        ("adam", "bare", "adam", "", 1, {}),
        ("adam(lr=0.01, beta1=0.8)", "bare", "adam", "", 1, {"lr": 0.01, "beta1": 0.8}),
        ("path/to/genome.json", "bare", "path/to/genome.json", "", 1, {}),
        ("study:quick", "study", "quick", "", 1, {}),
        ("study:my-study.round2#3", "study", "my-study.round2", "", 3, {}),
        ("study:quick#2(total_steps=500)", "study", "quick", "", 2, {"total_steps": 500}),
        ("genome:opt6(lr=0.1)", "genome", "opt6", "", 1, {"lr": 0.1}),
        ("pretrained:choice-small", "pretrained", "choice-small", "", 1, {}),
        ("student:runs/s", "student", "runs/s", "", 1, {}),
        ("torch:Adam", "class", "torch.optim", "Adam", 1, {}),
        # the docs' own example, and the booleans the old parsers got wrong
        ("torch:SGD(momentum=0.9, nesterov=True)", "class", "torch.optim", "SGD", 1,
         {"momentum": 0.9, "nesterov": True}),
        ("torch:Adam(maximize=True)", "class", "torch.optim", "Adam", 1, {"maximize": True}),
        ("torch:Adam(betas=(0.9, 0.999), amsgrad=false)", "class", "torch.optim", "Adam", 1,
         {"betas": (0.9, 0.999), "amsgrad": False}),
        ("pytorch_optimizer:Lion(betas=(0.9, 0.99), weight_decouple=TRUE)", "class", "pytorch_optimizer",
         "Lion", 1, {"betas": (0.9, 0.99), "weight_decouple": True}),
        ("torch.optim:AdamW(weight_decay=1e-2, foreach=None)", "class", "torch.optim", "AdamW", 1,
         {"weight_decay": 0.01, "foreach": None}),
        ("  torch:SGD( momentum = 0.5 )  ", "class", "torch.optim", "SGD", 1, {"momentum": 0.5}),
    ],
)  # fmt: skip
def test_parse(text, kind, target, name, rank, kwargs) -> None:
    ref = parse_ref(text)
    assert (ref.kind, ref.target, ref.name, ref.rank, dict(ref.kwargs)) == (kind, target, name, rank, kwargs)
    assert ref.text == text.strip()
    assert isinstance(ref, OptimizerRef)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty string"),
        ("adam(lr=0.1", "arguments at the end"),
        ("adam(0.1)", "by name"),
        ("adam(lr=fast)", "lr=fast is not a Python literal"),
        ("adam(lr=1+x)", "is not a Python literal"),
        ("adam(**kw)", "'\\*\\*' is not an argument"),
        ("study:quick#0", "positive integer"),
        ("study:quick#top", "positive integer"),
        ("torch:", "nothing after"),
        ("my-package:Opt", "is not a module path"),
        ("torch:Ad am", "is not a class name"),
        ("(lr=1)", "no name"),
    ],
)
def test_malformed_references_are_one_line_naming_the_reference(text, message) -> None:
    with pytest.raises(RefError, match=message) as info:
        parse_ref(text)
    assert "\n" not in str(info.value)


def test_class_references_import_any_optimizer_class() -> None:
    assert parse_ref("torch:Adam").import_class() is torch.optim.Adam
    assert parse_ref("torch.optim:SGD").import_class() is torch.optim.SGD
    with pytest.raises(RefError, match=r"torch\.optim has no optimizer 'Adamm'"):
        parse_ref("torch:Adamm").import_class()
    with pytest.raises(RefError, match="cannot import module 'no_such_module_xyz'"):
        parse_ref("no_such_module_xyz:Opt").import_class()
    with pytest.raises(RefError, match=r"is not a torch\.optim\.Optimizer subclass"):
        parse_ref("torch.nn:Linear").import_class()
    with pytest.raises(RefError, match="does not name an optimizer class"):
        parse_ref("adam").import_class()


def test_contenders_read_literal_arguments() -> None:
    from nosplug.benchmark.contenders import ContenderError, resolve

    c = resolve("torch:SGD(momentum=0.9, nesterov=True)")
    assert c.torch_class is torch.optim.SGD and c.torch_kwargs == {"momentum": 0.9, "nesterov": True}
    opt, _sched = c.build([torch.zeros(3, requires_grad=True)], {"lr": 0.1}, 10)
    assert opt.param_groups[0]["nesterov"] is True
    c = resolve("torch:Adam(betas=(0.8, 0.9))", ["beta2"])
    opt, _sched = c.build([torch.zeros(3, requires_grad=True)], {"lr": 0.1, "beta2": 0.95}, 10)
    assert opt.param_groups[0]["betas"] == (0.8, 0.95)
    assert resolve("torch.optim:AdamW(weight_decay=0.01)").torch_class is torch.optim.AdamW
    with pytest.raises(ContenderError, match="the learning rate is tuned"):
        resolve("torch:Adam(lr=0.1)")
    with pytest.raises(ContenderError, match="a genome takes no arguments"):
        resolve("adam(lr=0.1)")
    with pytest.raises(ContenderError, match="not a Python literal"):
        resolve("torch:Adam(betas=fast)")


def test_teachers_read_the_same_references() -> None:
    from nosplug.amalgamation.teachers import TeacherError, resolve_teacher

    t = resolve_teacher("torch:SGD(lr=0.1, momentum=0.9, nesterov=True)")
    state = t.init(torch.zeros(4))
    assert state["opt"].param_groups[0]["nesterov"] is True
    assert resolve_teacher("torch.optim:Adagrad(lr=0.01)").lr == 0.01
    with pytest.raises(TeacherError, match="positive integer"):
        resolve_teacher("study:quick#0")
    with pytest.raises(TeacherError, match="is not a teacher"):
        resolve_teacher("pretrained:choice-small")
