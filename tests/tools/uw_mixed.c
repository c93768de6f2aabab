/*
 * uw_mixed — a process that mixes UDP sends with TCP, Unix-socket, pipe,
 * file and netlink traffic, so the test can check that udpweave touches only
 * UDP sockets: everything else must be byte-identical, keep its message
 * boundaries and its errno behaviour.
 *
 *   uw_mixed --dest ADDR:PORT [--rounds N] [--flow-base B] [--netns-ping]
 *
 * UDP flows sent to --dest (payload format: see uw_sender.c), N each:
 *   B+0 sendto on an unconnected socket      B+1 send on a connected socket
 *   B+2 socket made by syscall(SYS_socket)   B+3 socket received via SCM_RIGHTS
 *   B+4 write on a dup() of a UDP socket
 * and one datagram each on flows B+5 (before close + fd reuse by a pipe),
 * B+6 (before fclose + fd reuse by fopen), B+7 (before dup2 over it).
 *
 * Output: lines "case=NAME rc=RC errno=NAME|OK [key=value...]" and
 * "check=NAME ok|FAIL ...", then {"udp_sent":{"FLOW":N,...},"fail":F}.
 * Exit status 0 when every check passed, 1 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uw_payload.h"

#define NFLOWS     8
#define CHUNK_MAX  3000

static struct sockaddr_storage dest;
static socklen_t dest_len;
static int rounds = 200;
static uint32_t flow_base = 5000;
static bool netns_ping;
static uint64_t udp_sent[NFLOWS];
static int failures;

/* ---------------------------------------------------------------- output */

static void out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static const char *ename(long rc, int err)
{
	return rc < 0 ? strerrorname_np(err) : "OK";
}

static void check(const char *name, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("check=%s %s", name, ok ? "ok" : "FAIL");
	if (fmt) {
		putchar(' ');
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
	if (!ok)
		failures++;
}

static void die(const char *what)
{
	fprintf(stderr, "uw_mixed: %s: %s\n", what, strerror(errno));
	exit(3);
}

/* ---------------------------------------------------------------- payloads */

static uint32_t uw_build(uint8_t *p, uint32_t flow, uint64_t seq)
{
	uint32_t len = 28 + (uint32_t)(uw_seed(flow, seq) % 1400);

	uw_payload_build(p, len, flow, seq);
	return len;
}

/* Non-UDP content: a deterministic byte stream per channel. */
static void fill_stream(uint8_t *p, size_t len, uint64_t *state)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = *state;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		*state = x;
		p[i] = (uint8_t)x;
	}
}

/* ---------------------------------------------------------------- helpers */

static int parse_dest(const char *arg)
{
	return uw_parse_addr(arg, &dest, &dest_len);
}

static int udp_connected(void)
{
	int fd = socket(dest.ss_family, SOCK_DGRAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&dest, dest_len) < 0)
		die("udp socket");
	return fd;
}

/* Sends datagram seq of flow index k on fd; how: 0 sendto, 1 send, 2 write. */
static void udp_send(int fd, int k, uint64_t seq, int how)
{
	uint8_t buf[2048];
	uint32_t len = uw_build(buf, flow_base + (uint32_t)k, seq);
	ssize_t rc;

	if (how == 0)
		rc = sendto(fd, buf, len, 0, (struct sockaddr *)&dest, dest_len);
	else if (how == 1)
		rc = send(fd, buf, len, 0);
	else
		rc = write(fd, buf, len);
	if (rc == (ssize_t)len) {
		udp_sent[k]++;
	} else {
		fprintf(stderr, "uw_mixed: udp flow %d: rc=%zd errno=%s\n", k, rc, strerrorname_np(errno));
		failures++;
	}
}

/* Reads exactly len bytes (2 s limit). */
static bool read_exact(int fd, uint8_t *p, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pf, 1, 2000) <= 0)
			return false;
		r = read(fd, p + got, len - got);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

static ssize_t recv_wait(int fd, uint8_t *p, size_t len)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	if (poll(&pf, 1, 2000) <= 0)
		return -2;
	return recv(fd, p, len, MSG_DONTWAIT);
}

/* ---------------------------------------------------------------- channels */

struct channel {
	const char *name;
	int w, r;
	bool socket;		/* send/sendmsg/sendmmsg allowed */
	bool message;		/* boundaries must be kept (dgram, seqpacket) */
	uint64_t wstate, rstate;
	uint64_t bytes, messages;
	bool ok;
};

/* One message/chunk through the call `how`; returns the expected length
 * written (all calls on these blocking fds write everything). */
static size_t channel_write(struct channel *c, int how, uint8_t *buf, size_t len)
{
	struct iovec iov[3];
	struct msghdr mh;
	struct mmsghdr mm[1];
	size_t a = len / 3, b = len / 2;
	ssize_t rc;

	fill_stream(buf, len, &c->wstate);
	iov[0].iov_base = buf;
	iov[0].iov_len = a;
	iov[1].iov_base = buf + a;
	iov[1].iov_len = b - a;
	iov[2].iov_base = buf + b;
	iov[2].iov_len = len - b;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = 3;
	switch (how) {
	case 0: rc = write(c->w, buf, len); break;
	case 1: rc = writev(c->w, iov, 3); break;
	case 2: rc = send(c->w, buf, len, 0); break;
	case 3: rc = sendto(c->w, buf, len, 0, NULL, 0); break;
	case 4: rc = sendmsg(c->w, &mh, 0); break;
	default:
		memset(mm, 0, sizeof(mm));
		mm[0].msg_hdr = mh;
		rc = sendmmsg(c->w, mm, 1, 0);
		if (rc == 1 && mm[0].msg_len == len)
			rc = (ssize_t)len;
		break;
	}
	if (rc != (ssize_t)len) {
		fprintf(stderr, "uw_mixed: %s how=%d: rc=%zd errno=%s\n", c->name, how, rc,
			strerrorname_np(errno));
		c->ok = false;
	}
	c->bytes += len;
	c->messages++;
	return len;
}

static void channel_verify(struct channel *c, size_t len)
{
	uint8_t got[CHUNK_MAX], want[CHUNK_MAX];

	fill_stream(want, len, &c->rstate);
	if (c->message) {
		ssize_t r = recv_wait(c->r, got, sizeof(got));

		if (r != (ssize_t)len || memcmp(got, want, len) != 0)
			c->ok = false;
	} else if (c->r >= 0) {
		if (!read_exact(c->r, got, len) || memcmp(got, want, len) != 0)
			c->ok = false;
	}
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&sin, len) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sin, &len) < 0)
		die("tcp listen");
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (*a < 0 || connect(*a, (struct sockaddr *)&sin, len) < 0)
		die("tcp connect");
	*b = accept(l, NULL, NULL);
	if (*b < 0)
		die("accept");
	close(l);
}

static int recv_fd(int sock)
{
	char c, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &mh, 0) != 1)
		die("recvmsg SCM_RIGHTS");
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		die("no SCM_RIGHTS");
	memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
	return fd;
}

static void send_fd(int sock, int fd)
{
	char c = 'F', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	memset(cbuf, 0, sizeof(cbuf));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
	if (sendmsg(sock, &mh, 0) != 1)
		die("sendmsg SCM_RIGHTS");
}

/* ---------------------------------------------------------------- traffic */

static void mixed_traffic(void)
{
	struct channel ch[5];
	int tcp_a, tcp_b, us[2], ud[2], sp[2], pp[2], file_fd, pass[2];
	int udp_u, udp_c, udp_raw, udp_scm, udp_dup, tmp;
	char path[] = "/tmp/uw_mixed.XXXXXX";
	uint8_t buf[CHUNK_MAX];
	uint64_t fstate = 77;
	bool file_ok = true;

	tcp_pair(&tcp_a, &tcp_b);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, us) < 0 || socketpair(AF_UNIX, SOCK_DGRAM, 0, ud) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) < 0 || pipe(pp) < 0 ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, pass) < 0)
		die("socketpair/pipe");
	file_fd = mkstemp(path);
	if (file_fd < 0)
		die("mkstemp");
	unlink(path);

	udp_u = socket(dest.ss_family, SOCK_DGRAM, 0);
	udp_c = udp_connected();
	udp_raw = (int)syscall(SYS_socket, dest.ss_family, SOCK_DGRAM, 0);
	if (udp_u < 0 || udp_raw < 0 || syscall(SYS_connect, udp_raw, &dest, dest_len) < 0)
		die("udp sockets");
	tmp = udp_connected();
	send_fd(pass[0], tmp);
	close(tmp);
	udp_scm = recv_fd(pass[1]);
	tmp = udp_connected();
	udp_dup = dup(tmp);
	close(tmp);

	ch[0] = (struct channel){ "tcp", tcp_a, tcp_b, true, false, 1, 1, 0, 0, true };
	ch[1] = (struct channel){ "unix_stream", us[0], us[1], true, false, 2, 2, 0, 0, true };
	ch[2] = (struct channel){ "unix_dgram", ud[0], ud[1], true, true, 3, 3, 0, 0, true };
	ch[3] = (struct channel){ "unix_seqpacket", sp[0], sp[1], true, true, 4, 4, 0, 0, true };
	ch[4] = (struct channel){ "pipe", pp[1], pp[0], false, false, 5, 5, 0, 0, true };

	for (int i = 0; i < rounds; i++) {
		udp_send(udp_u, 0, (uint64_t)i, 0);
		udp_send(udp_c, 1, (uint64_t)i, 1);
		for (int k = 0; k < 5; k++) {
			struct channel *c = &ch[k];
			int ncalls = c->socket ? 6 : 2;

			for (int how = 0; how < ncalls; how++) {
				size_t len = 1 + (size_t)((i * 7 + how * 131 + k * 17) % (CHUNK_MAX - 1));

				channel_write(c, how, buf, len);
			}
			/* read back in the same order */
			for (int how = 0; how < ncalls; how++)
				channel_verify(c, 1 + (size_t)((i * 7 + how * 131 + k * 17) % (CHUNK_MAX - 1)));
		}
		udp_send(udp_raw, 2, (uint64_t)i, 1);
		udp_send(udp_scm, 3, (uint64_t)i, 1);
		{
			size_t len = 1 + (size_t)(i % 1000);
			struct iovec fiov = { buf, len };

			fill_stream(buf, len, &fstate);
			if ((i % 2 ? write(file_fd, buf, len) : writev(file_fd, &fiov, 1)) != (ssize_t)len)
				file_ok = false;
		}
		udp_send(udp_dup, 4, (uint64_t)i, 2);
	}
	for (int k = 0; k < 5; k++)
		check(ch[k].name, ch[k].ok, "messages=%" PRIu64 " bytes=%" PRIu64, ch[k].messages,
		      ch[k].bytes);

	/* the file: read it back as a whole */
	{
		uint64_t st = 77;
		size_t total = 0;
		bool ok = true;

		for (int i = 0; i < rounds; i++) {
			size_t len = 1 + (size_t)(i % 1000);
			uint8_t got[1000];

			fill_stream(buf, len, &st);
			if (pread(file_fd, got, len, (off_t)total) != (ssize_t)len || memcmp(got, buf, len))
				ok = false;
			total += len;
		}
		check("file", file_ok && ok && lseek(file_fd, 0, SEEK_END) == (off_t)total, "bytes=%zu", total);
	}
	close(file_fd);
	close(tcp_a);
	close(tcp_b);
	close(us[0]);
	close(us[1]);
	close(ud[0]);
	close(ud[1]);
	close(sp[0]);
	close(sp[1]);
	close(pp[0]);
	close(pp[1]);
	close(pass[0]);
	close(pass[1]);
	/* udp_u, udp_c, udp_raw, udp_scm and udp_dup stay open until exit */
}

/* ---------------------------------------------------------------- errno cases */

static void errno_cases(void)
{
	int a, b, p[2], fd, us[2];
	long rc;
	uint8_t buf[64] = { 0 };
	struct sockaddr_in other = { .sin_family = AF_INET, .sin_port = htons(9),
				     .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	tcp_pair(&a, &b);
	errno = 0;
	rc = sendto(a, buf, 10, 0, (struct sockaddr *)&other, sizeof(other));
	out("case=tcp_sendto_with_addr rc=%ld errno=%s\n", rc, ename(rc, errno));
	shutdown(a, SHUT_WR);
	errno = 0;
	rc = send(a, buf, 10, MSG_NOSIGNAL);
	out("case=tcp_send_after_shutdown rc=%ld errno=%s\n", rc, ename(rc, errno));
	errno = 0;
	rc = write(a, buf, 10);
	out("case=tcp_write_after_shutdown rc=%ld errno=%s\n", rc, ename(rc, errno));
	close(a);
	close(b);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	errno = 0;
	rc = send(fd, buf, 10, MSG_NOSIGNAL);
	out("case=tcp_send_unconnected rc=%ld errno=%s\n", rc, ename(rc, errno));
	close(fd);

	if (pipe(p) < 0)
		die("pipe");
	close(p[0]);
	errno = 0;
	rc = write(p[1], buf, 10);
	out("case=pipe_write_no_reader rc=%ld errno=%s\n", rc, ename(rc, errno));
	close(p[1]);

	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	errno = 0;
	rc = send(fd, buf, 10, 0);
	out("case=unix_dgram_send_unconnected rc=%ld errno=%s\n", rc, ename(rc, errno));
	errno = 0;
	rc = sendmmsg(fd, NULL, 1, 0);
	out("case=unix_dgram_sendmmsg_null rc=%ld errno=%s\n", rc, ename(rc, errno));
	close(fd);

	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, us) < 0)
		die("socketpair");
	errno = 0;
	rc = send(us[0], NULL, 10, 0);
	out("case=unix_dgram_send_null rc=%ld errno=%s\n", rc, ename(rc, errno));
	errno = 0;
	rc = write(us[0], buf, 0);
	out("case=unix_dgram_write_zero rc=%ld errno=%s got=%zd\n", rc, ename(rc, errno),
	    recv(us[1], buf, sizeof(buf), MSG_DONTWAIT));
	close(us[0]);
	close(us[1]);

	fd = open("/dev/null", O_RDONLY);
	errno = 0;
	rc = write(fd, buf, 10);
	out("case=write_rdonly_file rc=%ld errno=%s\n", rc, ename(rc, errno));
	errno = 0;
	rc = send(fd, buf, 10, 0);
	out("case=send_on_file rc=%ld errno=%s\n", rc, ename(rc, errno));
	close(fd);
	errno = 0;
	rc = write(fd, buf, 10);
	out("case=write_closed_file rc=%ld errno=%s\n", rc, ename(rc, errno));
}

/* AF_NETLINK SOCK_DGRAM: a datagram socket that is not UDP. */
static void netlink_case(void)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	uint8_t rbuf[32768];
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_ROUTE), done = 0, msgs = 0;
	long rc;

	if (fd < 0)
		die("netlink socket");
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = RTM_GETLINK;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.ifi.ifi_family = AF_UNSPEC;
	errno = 0;
	rc = sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel));
	for (int i = 0; i < 100 && rc > 0 && !done; i++) {
		ssize_t r = recv_wait(fd, rbuf, sizeof(rbuf));

		if (r <= 0)
			break;
		for (struct nlmsghdr *nh = (struct nlmsghdr *)rbuf; NLMSG_OK(nh, (size_t)r);
		     nh = NLMSG_NEXT(nh, r)) {
			if (nh->nlmsg_type == NLMSG_DONE)
				done = 1;
			else if (nh->nlmsg_type == RTM_NEWLINK)
				msgs++;
		}
	}
	out("case=netlink_dump rc=%ld errno=%s done=%d has_links=%d\n", rc, ename(rc, errno), done,
	    msgs > 0);
	close(fd);
}

/* AF_INET SOCK_DGRAM IPPROTO_ICMP ("ping socket"): not UDP either.  Runs in
 * a child in a private network namespace where ping sockets are allowed. */
static void netns_ping_case(void)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		struct ifreq ifr;
		struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		struct icmphdr req = { .type = ICMP_ECHO, .un.echo.sequence = htons(1) };
		uint8_t rbuf[256];
		int s, fd, f;
		long rc;
		ssize_t r;

		if (unshare(CLONE_NEWNET) < 0) {
			out("case=icmp_dgram_socket skipped=unshare\n");
			_exit(0);
		}
		s = socket(AF_INET, SOCK_DGRAM, 0);
		memset(&ifr, 0, sizeof(ifr));
		strcpy(ifr.ifr_name, "lo");
		ioctl(s, SIOCGIFFLAGS, &ifr);
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
		close(s);
		f = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY);
		if (f < 0 || write(f, "0 2147483647", 12) != 12) {
			out("case=icmp_dgram_socket skipped=sysctl\n");
			_exit(0);
		}
		close(f);
		fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
		if (fd < 0) {
			out("case=icmp_dgram_socket skipped=%s\n", strerrorname_np(errno));
			_exit(0);
		}
		errno = 0;
		rc = sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&lo, sizeof(lo));
		r = recv_wait(fd, rbuf, sizeof(rbuf));
		out("case=icmp_dgram_socket rc=%ld errno=%s reply=%d\n", rc, ename(rc, errno),
		    r >= (ssize_t)sizeof(struct icmphdr) && ((struct icmphdr *)rbuf)->type == ICMP_ECHOREPLY);
		_exit(0);
	}
	waitpid(pid, &status, 0);
}

/* ---------------------------------------------------------------- fd reuse */

static int sink_socket(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)addr, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)addr, &len) < 0)
		die("sink");
	return fd;
}

static int count_queued(int fd, int wait_ms)
{
	uint8_t b[2048];
	int n = 0;

	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };

		if (poll(&pf, 1, n ? 0 : wait_ms) <= 0)
			return n;
		if (recv(fd, b, sizeof(b), MSG_DONTWAIT) < 0)
			return n;
		n++;
	}
}

static void fd_reuse_cases(void)
{
	struct sockaddr_in sink_addr;
	int sink = sink_socket(&sink_addr);
	int udp, p[2], fd2;
	uint8_t b[64];
	ssize_t rc, r;

	/* close() flushes: what was sent is at the sink when close returns */
	udp = socket(AF_INET, SOCK_DGRAM, 0);
	connect(udp, (struct sockaddr *)&sink_addr, sizeof(sink_addr));
	for (int i = 0; i < 5; i++)
		if (send(udp, "flushme", 7, 0) != 7)
			failures++;
	close(udp);
	r = count_queued(sink, 50);
	check("close_flushes", r == 5, "at_sink_after_close=%zd", r);

	/* a pipe reusing the number of a closed UDP socket */
	udp = udp_connected();
	udp_send(udp, 5, 0, 1);
	close(udp);
	if (pipe(p) < 0)
		die("pipe");
	errno = 0;
	rc = write(p[1], "pipe-data", 9);
	r = read(p[0], b, sizeof(b));
	out("case=fd_reuse_pipe rc=%zd errno=%s same_fd=%d\n", rc, ename(rc, errno), p[0] == udp || p[1] == udp);
	check("fd_reuse_pipe", rc == 9 && r == 9 && memcmp(b, "pipe-data", 9) == 0, "read=%zd", r);
	close(p[0]);
	close(p[1]);

	/* fclose closes inside libc (not through close()); fopen opens inside
	 * libc; the application then write()s to the file's fd */
	{
		char path[] = "/tmp/uw_mixed_f.XXXXXX";
		FILE *f;
		int t = mkstemp(path);

		close(t);
		udp = udp_connected();
		udp_send(udp, 6, 0, 1);
		f = fdopen(udp, "w");
		fclose(f);
		f = fopen(path, "r+");
		fd2 = f ? fileno(f) : -1;
		errno = 0;
		rc = write(fd2, "file-data", 9);
		out("case=fd_reuse_after_fclose rc=%zd errno=%s same_fd=%d\n", rc, ename(rc, errno), fd2 == udp);
		r = pread(fd2, b, sizeof(b), 0);
		check("fd_reuse_after_fclose", rc == 9 && r == 9 && memcmp(b, "file-data", 9) == 0,
		      "file_bytes=%zd", r);
		if (f)
			fclose(f);
		unlink(path);
	}

	/* dup2 of a pipe over a UDP socket */
	udp = udp_connected();
	udp_send(udp, 7, 0, 1);
	if (pipe(p) < 0)
		die("pipe");
	dup2(p[1], udp);
	errno = 0;
	rc = write(udp, "dup2-data", 9);
	r = read(p[0], b, sizeof(b));
	out("case=dup2_pipe_over_udp rc=%zd errno=%s\n", rc, ename(rc, errno));
	check("dup2_pipe_over_udp", rc == 9 && r == 9 && memcmp(b, "dup2-data", 9) == 0, "read=%zd", r);
	close(udp);
	close(p[0]);
	close(p[1]);
	close(sink);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dest", required_argument, NULL, 'd' },
		{ "rounds", required_argument, NULL, 'n' },
		{ "flow-base", required_argument, NULL, 'b' },
		{ "netns-ping", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_dest = false;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (parse_dest(optarg) < 0) {
				fprintf(stderr, "uw_mixed: bad --dest\n");
				return 2;
			}
			have_dest = true;
			break;
		case 'n': rounds = atoi(optarg); break;
		case 'b': flow_base = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p': netns_ping = true; break;
		default:
			fprintf(stderr, "usage: uw_mixed --dest ADDR:PORT [--rounds N] [--flow-base B] [--netns-ping]\n");
			return 2;
		}
	}
	if (!have_dest) {
		fprintf(stderr, "uw_mixed: --dest is needed\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	mixed_traffic();
	errno_cases();
	netlink_case();
	if (netns_ping)
		netns_ping_case();
	fd_reuse_cases();
	out("{\"udp_sent\":{");
	for (int k = 0; k < NFLOWS; k++)
		out("%s\"%u\":%" PRIu64, k ? "," : "", flow_base + (uint32_t)k, udp_sent[k]);
	out("},\"fail\":%d}\n", failures);
	return failures ? 1 : 0;
}
