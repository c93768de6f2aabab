#!/usr/bin/env bash
# Install the Debian packages the build, the tests, the demo and the
# benchmarks need, if any is missing. As root: apt-get. Otherwise: print
# the apt-get line to run and fail.
#
#   scripts/deps.sh         everything (make test, demo, bench)
#   scripts/deps.sh build   what compiling the library and the tool needs;
#                           the Makefile runs this before it reads pkg-config
set -euo pipefail

BUILD_PKGS=(
	gcc make libc6-dev pkg-config   # compiler
	libcap-dev libmnl-dev           # the udpweave tool, the packet backend
	liburing-dev                    # the uring backend
	liblttng-ust-dev                # tracepoints (make LTTNG=0 builds without)
)

PKGS=(
	"${BUILD_PKGS[@]}"

	man-db groff-base               # man pages and their test
	liburing-dev                    # the uring backend
	libcmocka-dev                   # unit tests
	python3 python3-pytest          # integration tests
	iproute2 iperf3 strace          # integration tests, bench
	nftables                        # tests: a firewall reject in a namespace
	ethtool                         # bench: veth offloads
	ffmpeg                          # demo and tests: media generation, ffprobe, a server
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	                                # demo and tests: GStreamer servers, live encoder
	vlc-bin vlc-plugin-base         # tests: VLC as a server
	util-linux                      # setpriv (VLC refuses to run as root)
	python3-matplotlib python3-numpy   # bench plots and figures
	netsniff-ng                     # bench: trafgen, the raw-ring ceiling
	lttng-tools babeltrace2         # tracepoints: their test
	tshark                          # tests: packet backend frames on the wire
	sockperf dnsmasq-base bind9-dnsutils   # bench: request/response (ping-pong, DNS)
)

if [ "${1:-}" = build ]; then
	PKGS=("${BUILD_PKGS[@]}")
	[ "${LTTNG:-1}" = 0 ] && PKGS=("${PKGS[@]/liblttng-ust-dev}")
fi

missing=()
for p in "${PKGS[@]}"; do
	[ -n "$p" ] || continue
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "udpweave: missing packages; run as root:" >&2
	echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "udpweave: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# tshark's wireshark-common asks whether non-root users may capture: no.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
