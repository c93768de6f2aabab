"""Issue 12's hostile cases the library does not yet answer as the kernel
does: not collected by pytest (the file name does not start with test_),
so that `make test` stays a statement of what holds. Run them with
    cd tests/integration && UW_TEST_BUILD=$PWD/../../build pytest-3 hostile_pending.py
Each moves into test_hostile.py when the library passes it:
- non-blocking backpressure: EAGAIN where the kernel gives it, no call
  blocking (the flush waits out a full socket under the flush lock);
- errors on the call the kernel fails (a socket's first datagram, and
  after a flush-time error, sent synchronously);
- the connected ECONNREFUSED sequence."""
import pytest

from conftest import BACKENDS
from test_hostile import assert_same, check_errors_3x, kernel_and_shim


@pytest.mark.parametrize("shim", BACKENDS)
def test_nonblock_eagain(shim):
    """O_NONBLOCK, SO_SNDBUF 4096, tbf 8 Mbit/s (on a private namespace's
    loopback): the kernel refuses with EAGAIN almost at once; the library
    must too, no call may block (10 ms bound, as issue 12 asks), every
    accepted datagram must arrive. The library may accept a little more
    than the kernel (its queue is bounded by the same SO_SNDBUF), not all."""
    args = ["nonblock-eagain", 2000, 1000, "tbf"]
    kernel, got, r = kernel_and_shim(args, shim, timeout=40)
    if not kernel["shaped"]:
        pytest.skip("no private network namespace with tbf (needs root and tc)")
    problems = []
    if kernel["eagain"] and not got["eagain"]:
        problems.append(f"no EAGAIN ({got['accepted']} of {got['count']} accepted)")
    if got["longest_us"] > 10_000:
        problems.append(f"one send call took {got['longest_us']} us")
    if got["accepted"] > 3 * kernel["accepted"] + 8:
        problems.append(f"accepted {got['accepted']}, the kernel {kernel['accepted']}")
    if got["received"] != got["accepted"] and kernel["received"] == kernel["accepted"]:
        problems.append(f"accepted {got['accepted']}, {got['received']} arrived")
    if got["so_error"] != kernel["so_error"]:
        problems.append(f"SO_ERROR {got['so_error']}, the kernel's {kernel['so_error']}")
    assert not problems, ("; ".join(problems) +
                          f"\nkernel:  {kernel}\nlibrary: {got}\n{r.describe()}")


@pytest.mark.parametrize("shim", BACKENDS)
@pytest.mark.parametrize("what", ["broadcast", "no-route"])
def test_errors_3x(what, shim):
    """sendto three times 10 ms apart to a subnet broadcast without
    SO_BROADCAST, and with no route (a namespace of the probe's own):
    every call's error as the kernel's, SO_ERROR too."""
    check_errors_3x(what, shim)


@pytest.mark.parametrize("shim", BACKENDS)
def test_connrefused(shim):
    """Connected to a closed loopback port, 4 sends 20 ms apart: the
    kernel's ok/ECONNREFUSED sequence and SO_ERROR."""
    kernel, got, r = kernel_and_shim(["connrefused"], shim)
    assert_same(kernel, got, r, "sends to a closed port")
