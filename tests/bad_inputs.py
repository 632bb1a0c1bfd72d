"""Tables of bad command lines and bad API calls, shared by tests/test_bad_inputs.py and by the before/after
count (`python tests/bad_inputs.py cli|api`, run against any checkout through PYTHONPATH).

Each bad command line is (id, argv, expected exit codes, regex the one-line message must match); `{D}` in argv
is the fixture directory (`make_fixtures`), the current directory while it runs. Each bad API call is (id, a
function of the fixture namespace, regex its tritonconv error must match).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

SHAPE = ["--c", "4", "--h", "5", "--w", "5", "--k", "8", "--dtype", "float32", "--interpret", "--trials", "2"]
USAGE, RUNTIME = {2}, {1}
GOOD_ENTRY = {"name": "a", "n": 1, "c": 4, "h": 5, "w": 5, "k": 8, "r": 3, "s": 3, "pad": 1}


def _suite(**changes) -> str:
    entry = {**GOOD_ENTRY, **changes}
    return json.dumps({"shapes": [{k: v for k, v in entry.items() if v is not ...}]})


# Suite files tune refuses: (case, file, its content, what the one-line error says after naming the file).
BAD_SUITES: list[tuple[str, str, str | bytes, str]] = [
    ("c 8.7", "c_float.json", _suite(c=8.7), r"#0.*'c'.*8\.7"),
    ("c text", "c_text.json", _suite(c="8"), r"'c'.*positive integer"),
    ("c bool", "c_bool.json", _suite(c=True), r"'c'"),
    ("c 0", "c_zero.json", _suite(c=0), r"'c'"),
    ("c -4", "c_negative.json", _suite(c=-4), r"'c'"),
    ("c 8.0", "c_whole_float.json", _suite(c=8.0), r"'c'"),
    ("missing c", "no_c.json", _suite(c=...), r"'c'"),
    ("stride [1]", "stride_short.json", _suite(stride=[1]), r"'stride'"),
    ("stride [1,2,3]", "stride_long.json", _suite(stride=[1, 2, 3]), r"'stride'"),
    ("stride [0,1]", "stride_zero.json", _suite(stride=[0, 1]), r"'stride'"),
    ("pad -1", "pad_negative.json", _suite(pad=-1), r"'pad'"),
    ("groups 0", "groups_zero.json", _suite(groups=0), r"'groups'"),
    ("groups 3", "groups_indivisible.json", _suite(groups=3), r"groups=3"),
    ("unknown field", "unknown_field.json", _suite(strde=2), r"unknown field 'strde'"),
    ("name a number", "name_number.json", _suite(name=5), r"'name'"),
    ("output empty", "output_empty.json", _suite(h=1, pad=0), r"not positive"),
    ("n 1e3", "n_huge_float.json", _suite(n=1e3), r"'n'"),
    ("entry a list", "entry_list.json", json.dumps({"shapes": [[1, 4, 5, 5, 8, 3, 3]]}), r"#0.*object"),
    ("duplicate names", "duplicate_names.json", json.dumps({"shapes": [GOOD_ENTRY, GOOD_ENTRY]}), r"named 'a'"),
    ("without shapes", "no_shapes.json", json.dumps({"about": "x"}), r"\"shapes\""),
    ("shapes an object", "shapes_object.json", json.dumps({"shapes": {"a": GOOD_ENTRY}}), r"list"),
    ("shapes empty", "shapes_empty.json", json.dumps({"shapes": []}), r"non-empty"),
    ("a list", "top_list.json", json.dumps([GOOD_ENTRY]), r"object"),
    ("unknown top field", "top_unknown.json", json.dumps({"shapes": [GOOD_ENTRY], "shaeps": []}), r"'shaeps'"),
    ("not JSON", "not_json.json", "{nope", r"not valid JSON"),
    ("not UTF-8", "bad_utf8.json", b'{"shapes": [{"name": "\xff\xfe"}]}', r"UTF-8"),
    ("deeply nested", "deep.json", "[" * 100000 + "]" * 100000, r""),
    ("escapes in a name", "escape_name.json", _suite(name="a\x1b[31m[/x]", c=8.7), r"\\x1b\[31m\[/x\]"),
]
TINYNET = '''
import torch
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())

def boom():
    raise RuntimeError("factory exploded")

def five():
    return 5

def noconv():
    return nn.Sequential(nn.ReLU())

NOT_CALLABLE = 3
'''


def make_fixtures(directory: Path) -> None:
    """The files the bad command lines name, under `directory`."""
    directory = Path(directory)
    for _, name, content, _ in BAD_SUITES:
        (directory / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    (directory / "adir").mkdir(exist_ok=True)
    (directory / "afile").write_text("x")
    (directory / "tinynet.py").write_text(TINYNET)
    (directory / "broken_syntax.py").write_text("def make(:\n")
    (directory / "raises_on_import.py").write_text("import no_such_dependency_xyz\n")
    (directory / "results_not_json.json").write_text("{nope")


def _shape(*extra: str) -> list[str]:
    return ["tune", *SHAPE, *extra]


def _refused(option: str, what: str, *values: str) -> list[tuple[str, list[str], set[int], str]]:
    """`tune <shape> --<option> <value>` for each value: a usage error saying the option must be `what`."""
    return [(f"{option} {value}", _shape(f"--{option}", value), USAGE, rf"--{option}: must be {what}, got '{re.escape(value)}'")
            for value in values]


# (id, argv, expected exit codes, message regex)
CLI_CASES: list[tuple[str, list[str], set[int], str]] = [
    # ---- tune: numbers ---------------------------------------------------------------------------------------
    *_refused("stride", "a positive integer", "0", "-1"),
    *_refused("groups", "a positive integer", "0"),
    ("groups not dividing", _shape("--groups", "3"), USAGE, r"groups=3 must divide"),
    ("groups not dividing k", ["tune", "--c", "8", "--h", "5", "--w", "5", "--k", "6", "--groups", "4",
                               "--interpret"], USAGE, r"groups=4 must divide"),
    *_refused("n", "a positive integer", "0"),
    *_refused("c", "a positive integer", "0", "abc", "8.7"),
    *_refused("h", "a positive integer", "0"),
    *_refused("w", "a positive integer", "-1"),
    *_refused("k", "a positive integer", "0"),
    *_refused("r", "a positive integer", "0"),
    *_refused("s", "a positive integer", "0"),
    *_refused("dilation", "a positive integer", "0", "-2"),
    *_refused("pad", "a non-negative integer", "-1"),
    ("output empty", ["tune", "--c", "4", "--h", "2", "--w", "2", "--k", "8", "--r", "5", "--pad", "0",
                      "--interpret"], USAGE, r"output height is not positive"),
    *_refused("trials", "a positive integer", "0", "-3", "1.5"),
    *_refused("early-stop", "a positive integer", "-1", "0"),
    *_refused("timeout", "a positive number", "0", "-1", "nan", "inf", "abc"),
    *_refused("tolerance", "a positive number", "0", "-1", "nan"),
    ("limit -1", ["tune", "--limit", "-1", "--interpret"], USAGE, r"--limit: must be a non-negative integer, got '-1'"),
    # ---- tune: choices and combinations ----------------------------------------------------------------------
    ("dtype float64", _shape("--dtype", "float64"), USAGE, r"--dtype.*float64"),
    ("dtype fp8", _shape("--dtype", "fp8"), USAGE, r"--dtype"),
    ("layout xyz", _shape("--layout", "xyz"), USAGE, r"--layout"),
    ("precision xyz", _shape("--precision", "xyz"), USAGE, r"--precision"),
    ("precision tf32 for fp16", ["tune", "--c", "4", "--h", "5", "--w", "5", "--k", "8", "--dtype", "fp16",
                                 "--precision", "tf32", "--interpret"], USAGE, r"tf32.*not available for fp16"),
    ("shape missing dims", ["tune", "--c", "4", "--interpret"], USAGE, r"missing --h, --k, --w"),
    ("suite and shape", ["tune", "{D}/no_c.json", *SHAPE], USAGE, r"not both|missing required field 'c'"),
    ("unknown flag", ["tune", "--bogus"], USAGE, r"unrecognized arguments: --bogus"),
    ("json into a directory", _shape("--json", "{D}/adir"), USAGE, r"--json.*is a directory"),
    ("json under a file", _shape("--json", "{D}/afile/out.json"), USAGE, r"--json.*not a directory"),
    ("json into /proc", _shape("--json", "/proc/tritonconv-test/out.json"), USAGE | RUNTIME, r"/proc"),
    ("empty shapes pattern", ["tune", "--shapes", ",", "--interpret"], USAGE, r"--shapes.*non-empty"),
    ("shapes matching nothing", ["tune", "--shapes", "no_such_layer*", "--interpret"], USAGE,
     r"no_such_layer.*matches no shape"),
    # ---- tune: suite files -----------------------------------------------------------------------------------
    ("suite missing", ["tune", "{D}/missing.json", "--interpret"], USAGE, r"no such file.*missing\.json"),
    ("suite is a directory", ["tune", "{D}/adir", "--interpret"], USAGE, r"adir.*directory"),
    *[(f"suite {case}", ["tune", f"{{D}}/{file}", "--interpret"], USAGE, rf"{re.escape(file)}.*{says}")
      for case, file, _, says in BAD_SUITES],
    # ---- bench (same suite checks, before looking for a GPU) -------------------------------------------------
    ("bench suite missing", ["bench", "{D}/missing.json"], USAGE, r"no such file"),
    ("bench --suite missing", ["bench", "--suite", "{D}/missing.json"], USAGE, r"no such file"),
    ("bench suite c 8.7", ["bench", "{D}/c_float.json"], USAGE, r"c_float\.json.*'c'.*8\.7"),
    ("bench dtype float64", ["bench", "--dtype", "float64"], USAGE, r"--dtype"),
    ("bench precision xyz", ["bench", "--precision", "xyz"], USAGE, r"--precision"),
    ("bench precision tf32 fp16", ["bench", "--precision", "tf32"], USAGE, r"not available for fp16"),
    ("bench shapes nothing", ["bench", "--shapes", "zzz*"], USAGE, r"zzz\*.*matches no shape"),
    ("bench out into a directory", ["bench", "--out", "{D}/adir"], USAGE, r"--out.*directory"),
    ("bench two suites", ["bench", "{D}/c_float.json", "--suite", "{D}/c_float.json"], USAGE, r"once"),
    # ---- tune-model ------------------------------------------------------------------------------------------
    ("model no colon", ["tune-model", "resnet50", "--collect-only"], USAGE, r"MODULE:FACTORY"),
    ("model empty module", ["tune-model", ":make", "--collect-only"], USAGE, r"MODULE:FACTORY"),
    ("model empty factory", ["tune-model", "tinynet:", "--collect-only"], USAGE, r"MODULE:FACTORY"),
    ("model no module", ["tune-model", "no_such_module_xyz:make", "--collect-only"], USAGE,
     r"no module named 'no_such_module_xyz'"),
    ("model missing attribute", ["tune-model", "tinynet:missing", "--collect-only"], USAGE, r"no callable 'missing'"),
    ("model not callable", ["tune-model", "tinynet:NOT_CALLABLE", "--collect-only"], USAGE, r"no callable"),
    ("model factory raises", ["tune-model", "tinynet:boom", "--collect-only"], USAGE,
     r"'tinynet:boom' failed: RuntimeError: factory exploded"),
    ("model factory returns 5", ["tune-model", "tinynet:five", "--collect-only"], USAGE, r"returned int"),
    ("model syntax error", ["tune-model", "broken_syntax:make", "--collect-only"], USAGE,
     r"importing 'broken_syntax' failed: SyntaxError"),
    ("model import fails", ["tune-model", "raises_on_import:make", "--collect-only"], USAGE,
     r"importing 'raises_on_import' failed: ModuleNotFoundError.*no_such_dependency_xyz"),
    ("model file missing", ["tune-model", "{D}/nofile.py:make", "--collect-only"], USAGE, r"nofile\.py.*does not exist"),
    ("model wrong channels", ["tune-model", "tinynet:make", "--input-shape", "1,4,8,8", "--collect-only"], USAGE,
     r"running tinynet:make on an input of shape 1,4,8,8 failed"),
    ("model without convs", ["tune-model", "tinynet:noconv", "--interpret"], USAGE, r"no torch.nn.Conv2d"),
    ("model input 3 dims", ["tune-model", "tinynet:make", "--input-shape", "1,3,8"], USAGE, r"N,C,H,W"),
    ("model input zero", ["tune-model", "tinynet:make", "--input-shape", "0,3,8,8"], USAGE, r"N,C,H,W"),
    ("model input text", ["tune-model", "tinynet:make", "--input-shape", "a,b,c,d"], USAGE, r"N,C,H,W"),
    ("model dtype float64", ["tune-model", "tinynet:make", "--dtype", "float64"], USAGE, r"--dtype"),
    ("model trials 0", ["tune-model", "tinynet:make", "--trials", "0"], USAGE, r"--trials"),
    ("model precision xyz", ["tune-model", "tinynet:make", "--precision", "xyz"], USAGE, r"--precision"),
    ("model tolerance -1", ["tune-model", "tinynet:make", "--tolerance", "-1"], USAGE, r"--tolerance"),
    ("model timeout -5", ["tune-model", "tinynet:make", "--timeout", "-5"], USAGE, r"--timeout"),
    ("model json into a directory", ["tune-model", "tinynet:make", "--collect-only", "--json", "{D}/adir"], USAGE,
     r"--json.*directory"),
    # ---- cache, report, top level ----------------------------------------------------------------------------
    ("cache no action", ["cache"], USAGE, r"ACTION|required"),
    ("cache bogus action", ["cache", "bogus"], USAGE, r"bogus"),
    ("cache import missing", ["cache", "import", "{D}/missing.json"], USAGE | RUNTIME, r"missing\.json"),
    ("cache import a directory", ["cache", "import", "{D}/adir"], USAGE | RUNTIME, r"adir"),
    ("cache import not JSON", ["cache", "import", "{D}/not_json.json"], USAGE | RUNTIME, r"not_json\.json|JSON"),
    ("cache export into a directory", ["cache", "export", "{D}/adir"], USAGE | RUNTIME, r"adir"),
    ("cache export under a file", ["cache", "export", "{D}/afile/x.json"], USAGE | RUNTIME, r"afile"),
    ("report missing", ["report", "{D}/missing.json"], USAGE | RUNTIME, r"missing\.json"),
    ("report a directory", ["report", "{D}/adir"], USAGE | RUNTIME, r"adir"),
    ("report not JSON", ["report", "{D}/results_not_json.json"], USAGE | RUNTIME, r"results_not_json\.json|JSON"),
    ("unknown command", ["bogus"], USAGE, r"bogus"),
    ("unknown top flag", ["--bogus"], USAGE, r"--bogus"),
]

# The same kind of mistakes through the real console script (slower: one process each).
SCRIPT_CASES = ["stride 0", "suite c 8.7", "model factory raises", "json into a directory", "trials 0",
                "suite escapes in a name"]


def api_fixtures():
    """Tensors and modules the bad API calls use (small, random, CPU: the interpreter)."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 6, generator=g)
    w = torch.randn(8, 4, 3, 3, generator=g)
    a, b = torch.randn(8, 4, generator=g), torch.randn(4, 6, generator=g)
    return SimpleNamespace(torch=torch, x=x, w=w, a=a, b=b)


def _calls(function: str, **fixture_args: str):
    """The case maker for `tritonconv.<function>`: its tensors come from the fixtures (parameter -> fixture name)
    unless the case passes them; a callable argument is computed from the fixtures."""
    def case(**kwargs):
        def call(f):
            import tritonconv

            args = {**{name: getattr(f, fixture) for name, fixture in fixture_args.items()}, **kwargs}
            return getattr(tritonconv, function)(**{k: (v(f) if callable(v) else v) for k, v in args.items()})
        return call
    return case


_conv = _calls("conv2d", input="x", weight="w")
_matmul = _calls("matmul", a="a", b="b")


def _sparse(t):
    return lambda f: getattr(f, t).to_sparse()


def _nested(f):
    return f.torch.nested.nested_tensor([f.x[0], f.x[0]])


def _quantized(name):
    return lambda f: f.torch.quantize_per_tensor(getattr(f, name), 0.1, 0, f.torch.qint8)


def _module(*args, **kwargs):
    def call(f):
        import tritonconv

        return tritonconv.nn.Conv2d(*args, **kwargs)
    return call


def _module_forward(change, input_shape=(1, 4, 6, 6), dtype=None):
    def call(f):
        import tritonconv

        torch = f.torch
        module = tritonconv.nn.Conv2d(4, 8, 3, padding=1)
        if dtype is not None:
            module = module.to(dtype)
        change(module)
        return module(torch.randn(*input_shape, dtype=dtype or torch.float32))
    return call


def _problem(**changes):
    from tritonconv.problem import ConvProblem

    fields = dict(n=1, c=4, h=5, w=5, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="float32", precision="ieee")
    return ConvProblem(**{**fields, **changes})


def _tune(problem_changes=None, problem=None, **options):
    def call(f):
        from tritonconv.search import tune

        options.setdefault("trials", 2)
        options.setdefault("progress", False)
        return tune(problem if problem is not None else _problem(**(problem_changes or {})), **options)
    return call


def _tune_model(model=None, example=None, **options):
    def call(f):
        import tritonconv

        torch = f.torch
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)) if model is None else model
        options.setdefault("progress", False)
        return tritonconv.tune_model(net, torch.randn(1, 3, 6, 6) if example is None else example, **options)
    return call


def _convert(model):
    def call(f):
        import tritonconv

        return tritonconv.convert(model)
    return call


def _set(name, value):
    return lambda module: setattr(module, name, value)


# (id, call(fixtures), regex of the tritonconv error's message)
API_CASES = [
    # ---- conv2d: hyper-parameters ------------------------------------------------------------------------
    ("conv stride 0", _conv(stride=0), r"stride"),
    ("conv stride -1", _conv(stride=-1), r"stride"),
    ("conv stride triple", _conv(stride=(1, 2, 3)), r"stride"),
    ("conv stride float", _conv(stride=1.5), r"stride"),
    ("conv stride text", _conv(stride="2"), r"stride"),
    ("conv stride bool", _conv(stride=True), r"stride"),
    ("conv stride None", _conv(stride=None), r"stride"),
    ("conv padding -1", _conv(padding=-1), r"padding"),
    ("conv padding full", _conv(padding="full"), r"padding"),
    ("conv padding triple", _conv(padding=(1, 2, 3)), r"padding"),
    ("conv padding float", _conv(padding=1.0), r"padding"),
    ("conv same strided", _conv(padding="same", stride=2), r"same"),
    ("conv dilation 0", _conv(dilation=0), r"dilation"),
    ("conv dilation float", _conv(dilation=1.0), r"dilation"),
    ("conv groups 0", _conv(groups=0), r"groups"),
    ("conv groups 3", _conv(groups=3), r"groups"),
    ("conv groups float", _conv(groups=1.0), r"groups"),
    ("conv groups bool", _conv(groups=True), r"groups"),
    ("conv groups -2", _conv(groups=-2), r"groups"),
    ("conv groups text", _conv(groups="1"), r"groups"),
    ("conv activation tanh", _conv(activation="tanh"), r"activation"),
    ("conv activation int", _conv(activation=1), r"activation"),
    ("conv precision tf32 fp16", _conv(input=lambda f: f.x.half(), weight=lambda f: f.w.half(), precision="tf32"),
     r"precision"),
    ("conv precision xyz", _conv(precision="xyz"), r"precision"),
    ("conv backend fast", _conv(backend="fast"), r"backend"),
    ("conv backend list", _conv(backend=["auto"]), r"backend"),
    ("conv output empty", _conv(input=lambda f: f.x[:, :, :2, :2]), r"output size"),
    # ---- conv2d: tensors -----------------------------------------------------------------------------------
    ("conv input a list", _conv(input=[[1.0]]), r"input must be a torch.Tensor"),
    ("conv weight a number", _conv(weight=3.0), r"weight must be a torch.Tensor"),
    ("conv bias a number", _conv(bias=3.0), r"bias must be a torch.Tensor"),
    ("conv residual a list", _conv(residual=[1.0]), r"residual must be a torch.Tensor"),
    ("conv input 2-D", _conv(input=lambda f: f.x[0, 0]), r"4-D"),
    ("conv input 5-D", _conv(input=lambda f: f.x[None]), r"4-D"),
    ("conv weight 3-D", _conv(weight=lambda f: f.w[0]), r"weight must be 4-D"),
    ("conv weight channels", _conv(weight=lambda f: f.w[:, :3]), r"input channels"),
    ("conv weight zero k", _conv(weight=lambda f: f.w[:0]), r"non-zero"),
    ("conv bias shape", _conv(bias=lambda f: f.torch.randn(7)), r"bias must have shape"),
    ("conv bias 2-D", _conv(bias=lambda f: f.torch.randn(8, 1)), r"bias must have shape"),
    ("conv bias dtype", _conv(bias=lambda f: f.torch.randn(8).half()), r"bias dtype"),
    ("conv residual shape", _conv(residual=lambda f: f.torch.randn(1, 8, 3, 3)), r"residual must have"),
    ("conv residual dtype", _conv(padding=1, residual=lambda f: f.torch.randn(1, 8, 6, 6).half()), r"residual dtype"),
    ("conv float64", _conv(input=lambda f: f.x.double(), weight=lambda f: f.w.double()), r"float64"),
    ("conv int32", _conv(input=lambda f: f.x.int(), weight=lambda f: f.w.int()), r"int32"),
    ("conv complex", _conv(input=lambda f: f.x.to(f.torch.complex64), weight=lambda f: f.w.to(f.torch.complex64)),
     r"complex64"),
    ("conv bool", _conv(input=lambda f: f.x > 0, weight=lambda f: f.w > 0), r"bool"),
    ("conv weight dtype", _conv(weight=lambda f: f.w.half()), r"weight dtype"),
    ("conv sparse input", _conv(input=_sparse("x")), r"input is a sparse tensor"),
    ("conv sparse weight", _conv(weight=_sparse("w")), r"weight is a sparse tensor"),
    ("conv sparse csr input", _conv(input=lambda f: f.x[0, 0].to_sparse_csr()), r"input is a sparse tensor"),
    ("conv nested input", _conv(input=_nested), r"input is a nested tensor"),
    ("conv quantized input", _conv(input=_quantized("x")), r"input is quantized"),
    ("conv quantized weight", _conv(weight=_quantized("w")), r"weight is quantized"),
    ("conv meta input cpu weight", _conv(input=lambda f: f.x.to("meta")), r"one device"),
    # ---- conv2d: explicit configs --------------------------------------------------------------------------
    ("config BLOCK_M float", _conv(config={"BLOCK_M": 32.0}), r"BLOCK_M=32\.0"),
    ("config BLOCK_M bool", _conv(config={"BLOCK_M": True}), r"BLOCK_M=True"),
    ("config BLOCK_M text", _conv(config={"BLOCK_M": "32"}), r"BLOCK_M='32'"),
    ("config BLOCK_M list", _conv(config={"BLOCK_M": [32]}), r"BLOCK_M=\[32\]"),
    ("config BLOCK_M dict", _conv(config={"BLOCK_M": {"a": 1}}), r"BLOCK_M"),
    ("config BLOCK_M nan", _conv(config={"BLOCK_M": float("nan")}), r"BLOCK_M=nan"),
    ("config BLOCK_M 33", _conv(config={"BLOCK_M": 33}), r"BLOCK_M=33"),
    ("config unknown key", _conv(config={"BLOCK_Q": 32}), r"BLOCK_Q"),
    ("config unknown family", _conv(config={"family": "nope"}), r"unknown kernel family 'nope'"),
    ("config family int", _conv(config={"family": 3}), r"family"),
    ("config family list", _conv(config={"family": ["implicit_gemm"]}), r"family"),
    ("config not a dict", _conv(config=[("BLOCK_M", 32)]), r"config must be a dict"),
    ("config a string", _conv(config="BLOCK_M=32"), r"config must be a dict"),
    ("config int key", _conv(config={1: 32}), r"config keys"),
    ("config num_warps 3", _conv(config={"num_warps": 3}), r"num_warps=3"),
    ("config num_warps 4.0", _conv(config={"num_warps": 4.0}), r"num_warps=4\.0"),
    ("config convert_nhwc text", _conv(config={"convert_nhwc": "yes"}), r"convert_nhwc"),
    ("config convert_nhwc 1", _conv(config={"convert_nhwc": 1}), r"convert_nhwc=1"),
    ("config precision bf16 fp16", _conv(input=lambda f: f.x.half(), weight=lambda f: f.w.half(),
                                         config={"precision": "bf16"}), r"precision"),
    ("config depthwise on dense", _conv(config={"family": "depthwise"}), r"depthwise"),
    # ---- matmul --------------------------------------------------------------------------------------------
    ("matmul a 1-D", _matmul(a=lambda f: f.a[0]), r"a must be at least 2-D"),
    ("matmul b 1-D", _matmul(b=lambda f: f.b[0]), r"b must be 2-D"),
    ("matmul b 4-D", _matmul(b=lambda f: f.b[None, None]), r"b must be 2-D"),
    ("matmul inner mismatch", _matmul(b=lambda f: f.b[:3]), r"inner dimensions"),
    ("matmul batched b 2-D a", _matmul(b=lambda f: f.b[None].expand(2, 4, 6)), r"batched b"),
    ("matmul float64", _matmul(a=lambda f: f.a.double(), b=lambda f: f.b.double()), r"float64"),
    ("matmul int", _matmul(a=lambda f: f.a.int(), b=lambda f: f.b.int()), r"int32"),
    ("matmul dtype mismatch", _matmul(b=lambda f: f.b.half()), r"dtype"),
    ("matmul bias shape", _matmul(bias=lambda f: f.torch.randn(5)), r"bias must have shape"),
    ("matmul residual shape", _matmul(residual=lambda f: f.torch.randn(8, 5)), r"residual must have"),
    ("matmul activation", _matmul(activation="tanh"), r"activation"),
    ("matmul precision", _matmul(precision="xyz"), r"precision"),
    ("matmul out shape", _matmul(out=lambda f: f.torch.empty(8, 5)), r"out must be"),
    ("matmul out dtype", _matmul(out=lambda f: f.torch.empty(8, 6).half()), r"out must be"),
    ("matmul out strided", _matmul(out=lambda f: f.torch.empty(6, 8).t()), r"out must be"),
    ("matmul out a list", _matmul(out=[0.0]), r"out must be a torch.Tensor"),
    ("matmul config float", _matmul(config={"BLOCK_M": 32.0}), r"BLOCK_M=32\.0"),
    ("matmul config list", _matmul(config={"BLOCK_M": [32]}), r"BLOCK_M"),
    ("matmul config family", _matmul(config={"family": "depthwise"}), r"depthwise"),
    ("matmul config unknown", _matmul(config={"BLOCK_Q": 1}), r"BLOCK_Q"),
    ("matmul config not a dict", _matmul(config=3), r"config must be a dict"),
    ("matmul sparse a", _matmul(a=_sparse("a")), r"a is a sparse tensor"),
    ("matmul nested a", _matmul(a=lambda f: f.torch.nested.nested_tensor([f.a, f.a])), r"a is a nested tensor"),
    ("matmul quantized b", _matmul(b=_quantized("b")), r"b is quantized"),
    ("matmul a a list", _matmul(a=[[1.0]]), r"a must be a torch.Tensor"),
    # ---- nn.Conv2d -----------------------------------------------------------------------------------------
    ("module groups 0", _module(4, 8, 3, groups=0), r"groups"),
    ("module groups 3", _module(4, 8, 3, groups=3), r"divisible by groups"),
    ("module padding full", _module(4, 8, 3, padding="full"), r"padding"),
    ("module activation tanh", _module(4, 8, 3, activation="tanh"), r"activation"),
    ("module forward channels", _module_forward(lambda m: None, input_shape=(1, 3, 6, 6)), r"input channels|C=3"),
    ("module forward 2-D", _module_forward(lambda m: None, input_shape=(6, 6)), r"4-D"),
    ("module forward float64", _module_forward(lambda m: None, dtype=__import__("torch").float64), r"float64"),
    ("module config float", _module_forward(_set("config", {"BLOCK_M": 32.0})), r"BLOCK_M=32\.0"),
    ("module config unhashable", _module_forward(_set("config", {"BLOCK_M": [32]})), r"BLOCK_M"),
    ("module backend fast", _module_forward(_set("backend", "fast")), r"backend"),
    ("module precision xyz", _module_forward(_set("precision", "xyz")), r"precision"),
    # ---- tune ----------------------------------------------------------------------------------------------
    ("tune not a problem", _tune(problem="n1_c4"), r"ConvProblem"),
    ("tune trials 0", _tune(trials=0), r"trials must be a positive int"),
    ("tune trials -1", _tune(trials=-1), r"trials"),
    ("tune trials 2.5", _tune(trials=2.5), r"trials"),
    ("tune trials True", _tune(trials=True), r"trials"),
    ("tune timeout 0", _tune(timeout=0), r"timeout"),
    ("tune timeout -1", _tune(timeout=-1), r"timeout"),
    ("tune early_stop -1", _tune(early_stop=-1), r"early_stop"),
    ("tune early_stop 0", _tune(early_stop=0), r"early_stop"),
    ("tune tolerance 0", _tune(tolerance=0), r"tolerance"),
    ("tune tolerance nan", _tune(tolerance=float("nan")), r"tolerance"),
    ("tune precision xyz", _tune(precision="xyz"), r"precision"),
    ("tune precision bf16 fp16", _tune({"dtype": "float16", "precision": "fp16"}, precision="tf32"), r"precision"),
    ("tune layouts", _tune(layouts="nope"), r"layouts"),
    ("tune retime_top 0", _tune(retime_top=0), r"retime_top"),
    ("tune seed text", _tune(seed="a"), r"seed"),
    ("tune_many unknown option", lambda f: __import__("tritonconv.search", fromlist=["tune_many"]).tune_many(
        [_problem()], budget=3, progress=False), r"unknown tuning option"),
    ("tune cache a file", _tune(cache=__file__), r"cache"),
    ("tune problem n 0", _tune({"n": 0}), r"n must be a positive int"),
    ("tune problem groups 3", _tune({"groups": 3}), r"groups=3"),
    ("tune problem float64", _tune({"dtype": "float64", "precision": "ieee"}), r"float64"),
    ("tune problem layout", _tune({"layout": "xyz"}), r"layout"),
    ("tune problem precision", _tune({"precision": "bf17"}), r"precision"),
    # ---- tune_model and convert ----------------------------------------------------------------------------
    ("tune_model not a module", _tune_model(model="resnet"), r"torch.nn.Module"),
    ("tune_model example text", _tune_model(example="x"), r"example_inputs"),
    ("tune_model dtype float64", _tune_model(dtype="float64"), r"dtype"),
    ("tune_model torch float64", _tune_model(dtype=__import__("torch").float64), r"float64"),
    ("tune_model trials 0", _tune_model(trials=0), r"trials"),
    ("tune_model precision xyz", _tune_model(precision="xyz"), r"precision"),
    ("tune_model timeout -1", _tune_model(timeout=-1), r"timeout"),
    ("convert a string", _convert("model"), r"torch.nn.Module"),
    ("convert None", _convert(None), r"torch.nn.Module"),
]


# ---- before/after counts: `python tests/bad_inputs.py cli|api` with PYTHONPATH naming the checkout ---------------
def _count_cli(workdir: Path) -> dict[str, list[str]]:
    import subprocess

    make_fixtures(workdir)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITONCONV_CACHE_DIR"] = str(workdir / "cache")
    counts: dict[str, list[str]] = {"ok": [], "traceback": [], "late or unclear": [], "accepted": []}
    for case_id, argv, codes, pattern in CLI_CASES:
        argv = [a.replace("{D}", str(workdir)) for a in argv]
        try:
            done = subprocess.run([sys.executable, "-m", "tritonconv.cli", *argv], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=120)
            out, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired:
            counts["late or unclear"].append(f"{case_id} (still running after 120 s)")
            continue
        if "Traceback (most recent call last)" in out:
            counts["traceback"].append(case_id)
        elif code == 0:
            counts["accepted"].append(case_id)
        elif code in codes and re.search(pattern, out):
            counts["ok"].append(case_id)
        else:
            counts["late or unclear"].append(f"{case_id} (exit {code}: {out.strip().splitlines()[-1][:150] if out.strip() else ''})")
    return counts


def _count_api() -> dict[str, list[str]]:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import tritonconv

    fixtures = api_fixtures()
    counts: dict[str, list[str]] = {"ok": [], "raw exception": [], "unclear message": [], "accepted": []}
    for case_id, call, pattern in API_CASES:
        try:
            call(fixtures)
        except tritonconv.TritonConvError as error:
            key = "ok" if re.search(pattern, str(error)) else "unclear message"
            counts[key].append(case_id if key == "ok" else f"{case_id}: {str(error)[:120]}")
        except Exception as error:  # noqa: BLE001 - counted
            counts["raw exception"].append(f"{case_id}: {type(error).__name__}: {str(error)[:120]}")
        else:
            counts["accepted"].append(case_id)
    return counts


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRITONCONV_CACHE_DIR"] = str(Path(tmp) / "cache")
        result = _count_cli(Path(tmp)) if sys.argv[1] == "cli" else _count_api()
    total = sum(len(v) for v in result.values())
    print(json.dumps({k: len(v) for k, v in result.items()} | {"total": total}))
    for kind, cases in result.items():
        if kind != "ok":
            for case in cases:
                print(f"{kind}: {case}")
