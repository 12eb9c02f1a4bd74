/* netb: the two ends of bench/network.sh's published-port measurements.
 *
 *   netb serve [PORT]          in the container (default port 80), one connection at a time:
 *                              first byte 'p' -> one byte back and close ("ping");
 *                              first byte 'b' -> count bytes until EOF, send the count
 *                              (8 bytes, big endian) and close ("bulk").
 *   netb lat HOST PORT N       N sequential connects, each a 'p' round trip; prints µs each.
 *   netb tput HOST PORT MIB    MIB MiB in one connection, until the server has counted them
 *                              all; prints MiB/s.
 *
 * Built static (gcc -O2 -static) so the same file runs on the host and in the busybox image;
 * the server never forks, so a connect costs the network path and nothing else.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIB (1 << 20)

__attribute__((noreturn)) static void die(const char *what) {
  fprintf(stderr, "netb: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_full(int fd, char *p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

__attribute__((noreturn)) static void serve(int port) {
  static char buf[256 * 1024];
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (l < 0) die("socket");
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (bind(l, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(l, 512) < 0) die("listen");
  for (;;) {
    int c = accept(l, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("accept");
    }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char mode;
    if (read_full(c, &mode, 1) == 0) {
      if (mode == 'p') {
        write_all(c, "p", 1);
      } else if (mode == 'b') {
        uint64_t total = 0;
        for (;;) {
          ssize_t r = read(c, buf, sizeof buf);
          if (r < 0 && errno == EINTR) continue;
          if (r <= 0) break;
          total += (uint64_t)r;
        }
        unsigned char be[8];
        for (int i = 0; i < 8; i++) be[i] = (unsigned char)(total >> (56 - 8 * i));
        write_all(c, (char *)be, 8);
      }
    }
    close(c);
  }
}

static int dial(const char *host, int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (s < 0) die("socket");
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "netb: not an IPv4 address: %s\n", host);
    exit(2);
  }
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  return s;
}

static void ping(const char *host, int port) {
  int s = dial(host, port);
  char r;
  if (write_all(s, "p", 1) < 0 || read_full(s, &r, 1) < 0 || r != 'p') die("ping");
  close(s);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "serve") == 0) serve(argc > 2 ? atoi(argv[2]) : 80);
  if (argc == 5 && strcmp(argv[1], "lat") == 0) {
    int port = atoi(argv[3]), n = atoi(argv[4]);
    for (int i = 0; i < 50; i++) ping(argv[2], port); /* warm-up */
    double t = now();
    for (int i = 0; i < n; i++) ping(argv[2], port);
    printf("%.1f\n", (now() - t) * 1e6 / n);
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "tput") == 0) {
    int port = atoi(argv[3]), mib = atoi(argv[4]);
    static char chunk[MIB];
    memset(chunk, 0x5a, sizeof chunk);
    double t = now();
    int s = dial(argv[2], port);
    if (write_all(s, "b", 1) < 0) die("write");
    for (int i = 0; i < mib; i++)
      if (write_all(s, chunk, sizeof chunk) < 0) die("write");
    shutdown(s, SHUT_WR);
    unsigned char be[8];
    if (read_full(s, (char *)be, 8) < 0) die("read count");
    double secs = now() - t;
    uint64_t got = 0;
    for (int i = 0; i < 8; i++) got = (got << 8) | be[i];
    if (got != (uint64_t)mib * MIB) {
      fprintf(stderr, "netb: server counted %llu bytes, sent %llu\n", (unsigned long long)got,
              (unsigned long long)mib * MIB);
      return 1;
    }
    close(s);
    printf("%.0f\n", mib / secs);
    return 0;
  }
  fprintf(stderr, "usage: netb serve [PORT] | lat HOST PORT N | tput HOST PORT MIB\n");
  return 2;
}
