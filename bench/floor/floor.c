/* The syscall floor of the nginx -> `uwsgi_pass unix:` path (benchmark case 1).
 *
 *   floor SOCKET PROCESSES
 *
 * Binds SOCKET, forks PROCESSES-1 more processes sharing it, and in each: accept4 (poll
 * only when the backlog is empty, as the vassal does), one recv of the request, one
 * send of a fixed HTTP response, close. No parsing, no Python,
 * no logging: the CPU this uses per request is what the kernel charges any server on
 * this path for the connection itself, so no WSGI server can use less. It is a
 * measuring stick, not a server (a request split over two reads gets the answer
 * early). SIGTERM to the first process ends them all.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char RESP[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

static void serve(int l) {
    static char buf[65536];
    struct pollfd p = {.fd = l, .events = POLLIN};
    for (;;) {
        /* Accept first, sleep in poll only when the backlog is empty. */
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            poll(&p, 1, -1);
            continue;
        }
        if (recv(c, buf, sizeof buf, 0) > 0)
            send(c, RESP, sizeof RESP - 1, MSG_NOSIGNAL);
        close(c);
    }
}

#define MAX_PROCESSES 64
static pid_t children[MAX_PROCESSES];
static int nchildren;

static void stop(int sig) {
    (void)sig;
    for (int i = 0; i < nchildren; i++)
        kill(children[i], SIGKILL);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 3 || atoi(argv[2]) < 1 || atoi(argv[2]) > MAX_PROCESSES) {
        fprintf(stderr, "usage: floor SOCKET PROCESSES\n");
        return 2;
    }
    int n = atoi(argv[2]);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1024)) {
        perror("floor: bind/listen");
        return 1;
    }
    chmod(argv[1], 0666);
    signal(SIGTERM, stop);
    for (int i = 1; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            signal(SIGTERM, SIG_DFL);
            serve(l);
        }
        if (p > 0)
            children[nchildren++] = p;
    }
    serve(l);
}
