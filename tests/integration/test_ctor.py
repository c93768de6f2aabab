"""UDP sends from another library's constructor (libuw_ctor.so), which can
run before the shim's own constructor, while it runs, or after (dlopen):
the datagrams arrive (design.md 3.5; style.md: bind lazily, pass through
until initialised)."""
import pytest

from conftest import (PRELOAD, SAN_RUNTIME, TOOLS, assert_delivered, require_shim,
                      run, sender_summaries, tool)

CTOR_COUNT = 60
CTOR_FLOW = 9000
CTOR_SIZES = [28, 1316, 1316, 700, 1472]


def ctor_lib():
    path = TOOLS / "libuw_ctor.so"
    if not path.exists():
        pytest.skip(f"{path} not built (run `make tools`)")
    return str(path)


def ctor_summary():
    """The ctor library's two flows in the sender-summary format."""
    flows = {}
    for k in range(2):
        sizes = [CTOR_SIZES[i % len(CTOR_SIZES)] for i in range(CTOR_COUNT)]
        flows[str(CTOR_FLOW + k)] = {"sent": CTOR_COUNT, "bytes": sum(sizes),
                                     "dest_index": 0, "dest": "ctor"}
    return {"flows": flows, "zero_len_total": 0}


@pytest.mark.parametrize("order", ["shim-then-ctor", "ctor-then-shim", "dlopen", "baseline"])
def test_constructor_sends(receiver_factory, order):
    """libuw_ctor.so sends 2 x 60 datagrams from its constructor (one flow
    via sendto on a socket left open, one via send on a connected socket it
    closes); uw_sender then sends its own.  Everything arrives."""
    lib = ctor_lib()
    rx = receiver_factory(binds=["127.0.0.1:0"])
    env = {"UW_CTOR_DEST": rx.addr(0), "UW_CTOR_COUNT": str(CTOR_COUNT),
           "UW_CTOR_FLOW": str(CTOR_FLOW)}
    args = [tool("uw_sender"), "--dest", rx.addr(0), "--count", 100, "--mode", "mixed",
            "--connected", "--flow-base", 100]
    shim = order != "baseline"
    preload = None
    if shim:
        require_shim()
    if order == "shim-then-ctor":
        preload = f"{PRELOAD} {lib}"
    elif order == "ctor-then-shim":
        # a sanitizer runtime (if any) must stay first
        preload = " ".join(SAN_RUNTIME + [lib, PRELOAD.split()[-1]])
    elif order == "dlopen":
        args += ["--dlopen", lib]
    if order == "baseline":
        env["LD_PRELOAD"] = " ".join(SAN_RUNTIME + [lib])
    r = run(args, shim=shim, extra_env=env, preload=preload)
    sums = sender_summaries(r)
    report = rx.finish()
    assert f"uw_ctor: sent={2 * CTOR_COUNT} errors=0" in r.stderr, (
        f"the constructor did not run or its sends failed\n{r.describe()}")
    assert_delivered(report, sums + [ctor_summary()], r.describe(), ports=rx.ports)
