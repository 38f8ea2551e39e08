/*
 * The C floor: a single-threaded epoll chat broadcaster, the least work any
 * server must do for the load generator's line-mode workloads.
 *
 * Usage: c_floor PORT   (listens on 127.0.0.1:PORT; PORT 0 picks one and
 *                        prints "port N" on stdout)
 *
 * It speaks just enough of twisted-chat's line protocol (PROTOCOL.md) for
 * `python -m twisted_chat.bench` to run unchanged against it:
 *
 *   on connect       "* Welcome to c-floor, guestN!\r\n" (nick guestN, no room)
 *   /join #room      the client's room becomes #room -> "* You joined #room.\r\n"
 *   /part #room      leaves it if it is the client's room -> "* You left #room.\r\n"
 *   /nick NAME       "* You are now known as NAME.\r\n"
 *   /ping            "* pong\r\n" (after everything queued for the client before)
 *   /anything else   "! unknown-command: /anything\r\n"
 *   text             "[#room] <nick> text\r\n" to every other member of the
 *                    sender's room (none back to the sender)
 *
 * A client is in at most one room (the bench joins one and parts #lobby, which
 * it never joined here).  Lines end in LF (a CR before it is dropped); a line
 * longer than MAX_LINE is cut.  Every read is split into lines and each line
 * appended to its recipients' output buffers; after each epoll_wait batch,
 * every recipient with output gets one write() (the rest waits for EPOLLOUT).
 * No flood control, no limits, no history: the floor, not a chat server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define IN_CAP 65536
#define MAX_LINE 4096
#define NAME_CAP 64
#define MAX_EVENTS 1024

struct room;

struct client {
    int alive;
    int fd;
    int dirty;
    int writing; /* EPOLLOUT registered */
    char nick[NAME_CAP];
    struct room *room;
    size_t slot; /* index in room->members */
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
};

struct room {
    char name[NAME_CAP];
    size_t name_len;
    int *members; /* fds */
    size_t count, cap;
    struct room *next; /* hash chain */
};

static struct client *clients[MAX_FDS];
static struct client *dirty[MAX_FDS];
static size_t dirty_count;
static int epfd;
static unsigned long guests;

#define ROOM_BUCKETS 65536
static struct room *buckets[ROOM_BUCKETS];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static uint32_t hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static struct room *room_named(const char *name, size_t n, int create) {
    if (n >= NAME_CAP) n = NAME_CAP - 1;
    uint32_t b = hash(name, n) % ROOM_BUCKETS;
    for (struct room *r = buckets[b]; r; r = r->next)
        if (r->name_len == n && memcmp(r->name, name, n) == 0) return r;
    if (!create) return NULL;
    struct room *r = calloc(1, sizeof *r);
    if (!r) die("calloc");
    memcpy(r->name, name, n);
    r->name_len = n;
    r->next = buckets[b];
    buckets[b] = r;
    return r;
}

static void out_append(struct client *c, const char *data, size_t n) {
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n) cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) die("realloc");
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
    if (!c->dirty) {
        c->dirty = 1;
        dirty[dirty_count++] = c;
    }
}

static void out_str(struct client *c, const char *s) { out_append(c, s, strlen(s)); }

static void leave_room(struct client *c) {
    struct room *r = c->room;
    if (!r) return;
    int last = r->members[--r->count];
    if (last != c->fd) {
        r->members[c->slot] = last;
        clients[last]->slot = c->slot;
    }
    c->room = NULL;
}

static void join_room(struct client *c, const char *name, size_t n) {
    struct room *r = room_named(name, n, 1);
    if (c->room == r) return;
    leave_room(c);
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->members = realloc(r->members, r->cap * sizeof *r->members);
        if (!r->members) die("realloc");
    }
    c->slot = r->count;
    r->members[r->count++] = c->fd;
    c->room = r;
}

static void close_client(struct client *c) {
    leave_room(c);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    clients[c->fd] = NULL;
    c->alive = 0;
    /* A dirty client is still listed in dirty[]: freed there. */
    if (!c->dirty) {
        free(c->in);
        free(c->out);
        free(c);
    }
}

static void set_writing(struct client *c, int on) {
    if (c->writing == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->writing = on;
}

/* One write of everything queued; 0 when the client had to be closed. */
static int flush_client(struct client *c) {
    size_t done = 0;
    while (done < c->out_len) {
        ssize_t w = write(c->fd, c->out + done, c->out_len - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (w < 0 && errno == EINTR) continue;
        close_client(c);
        return 0;
    }
    if (done) {
        memmove(c->out, c->out + done, c->out_len - done);
        c->out_len -= done;
    }
    set_writing(c, c->out_len > 0);
    return 1;
}

static void say(struct client *c, const char *text, size_t n) {
    struct room *r = c->room;
    if (!r || r->count < 2) return;
    char line[MAX_LINE + 2 * NAME_CAP + 16];
    size_t len = 0;
    line[len++] = '[';
    memcpy(line + len, r->name, r->name_len);
    len += r->name_len;
    line[len++] = ']';
    line[len++] = ' ';
    line[len++] = '<';
    size_t nick_len = strlen(c->nick);
    memcpy(line + len, c->nick, nick_len);
    len += nick_len;
    line[len++] = '>';
    line[len++] = ' ';
    memcpy(line + len, text, n);
    len += n;
    line[len++] = '\r';
    line[len++] = '\n';
    for (size_t i = 0; i < r->count; i++) {
        int fd = r->members[i];
        if (fd != c->fd) out_append(clients[fd], line, len);
    }
}

static const char *skip_spaces(const char *p, const char *end) {
    while (p < end && *p == ' ') p++;
    return p;
}

static void command(struct client *c, const char *p, size_t n) {
    const char *end = p + n;
    const char *word_end = memchr(p, ' ', n);
    if (!word_end) word_end = end;
    size_t word = (size_t)(word_end - p);
    const char *arg = skip_spaces(word_end, end);
    size_t arg_len = (size_t)(end - arg);
    const char *arg_end = memchr(arg, ' ', arg_len);
    if (arg_end) arg_len = (size_t)(arg_end - arg);
    if (arg_len >= NAME_CAP) arg_len = NAME_CAP - 1;
    char reply[3 * NAME_CAP];
    if (word == 5 && memcmp(p, "/ping", 5) == 0) {
        out_str(c, "* pong\r\n");
    } else if (word == 5 && memcmp(p, "/join", 5) == 0 && arg_len > 1 && arg[0] == '#') {
        join_room(c, arg, arg_len);
        snprintf(reply, sizeof reply, "* You joined %.*s.\r\n", (int)arg_len, arg);
        out_str(c, reply);
    } else if (word == 5 && memcmp(p, "/part", 5) == 0) {
        if (c->room && (arg_len == 0 || (c->room->name_len == arg_len &&
                                         memcmp(c->room->name, arg, arg_len) == 0))) {
            snprintf(reply, sizeof reply, "* You left %s.\r\n", c->room->name);
            leave_room(c);
        } else {
            snprintf(reply, sizeof reply, "! not-in-room: You are not in %.*s.\r\n",
                     (int)arg_len, arg);
        }
        out_str(c, reply);
    } else if (word == 5 && memcmp(p, "/nick", 5) == 0 && arg_len > 0) {
        memcpy(c->nick, arg, arg_len);
        c->nick[arg_len] = 0;
        snprintf(reply, sizeof reply, "* You are now known as %s.\r\n", c->nick);
        out_str(c, reply);
    } else {
        snprintf(reply, sizeof reply, "! unknown-command: %.*s\r\n",
                 (int)(word < NAME_CAP ? word : NAME_CAP), p);
        out_str(c, reply);
    }
}

static void line(struct client *c, const char *p, size_t n) {
    if (n && p[n - 1] == '\r') n--;
    if (n > MAX_LINE) n = MAX_LINE;
    if (n == 0) return;
    if (p[0] == '/')
        command(c, p, n);
    else
        say(c, p, n);
}

static void readable(struct client *c) {
    for (;;) {
        ssize_t r = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) {
            close_client(c);
            return;
        }
        c->in_len += (size_t)r;
        break;
    }
    char *p = c->in, *end = c->in + c->in_len;
    char *nl;
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        line(c, p, (size_t)(nl - p));
        p = nl + 1;
    }
    size_t rest = (size_t)(end - p);
    if (rest == IN_CAP) { /* one overlong line fills the buffer: cut it */
        line(c, p, rest);
        rest = 0;
    }
    memmove(c->in, p, rest);
    c->in_len = rest;
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of descriptors: try again later */
        }
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct client *c = calloc(1, sizeof *c);
        if (!c || !(c->in = malloc(IN_CAP))) die("malloc");
        c->alive = 1;
        c->fd = fd;
        snprintf(c->nick, sizeof c->nick, "guest%lu", ++guests);
        clients[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        char hello[NAME_CAP + 64];
        snprintf(hello, sizeof hello,
                 "* Welcome to c-floor, %s! /join #room, then talk.\r\n", c->nick);
        out_str(c, hello);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("port %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl");
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                accept_all(lfd);
                continue;
            }
            struct client *c = clients[fd];
            if (!c) continue;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) readable(c);
            if (events[i].events & EPOLLOUT) {
                c = clients[fd]; /* NULL if the read closed it */
                if (c) flush_client(c);
            }
        }
        /* The end of the batch: one write per recipient with output. */
        size_t count = dirty_count;
        dirty_count = 0;
        for (size_t i = 0; i < count; i++) {
            struct client *c = dirty[i];
            c->dirty = 0;
            if (!c->alive) {
                free(c->in);
                free(c->out);
                free(c);
            } else if (c->out_len) {
                flush_client(c);
            }
        }
    }
}
