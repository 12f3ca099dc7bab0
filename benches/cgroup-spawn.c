/* How long a spawning thread waits for a child to reach exec, by the way the child gets into a
 * cgroup (issue 16: which clone orch's spawn uses). Root, cgroup v2 mounted at CGROOT.
 *
 *   gcc -O2 -o /tmp/cgroup-spawn benches/cgroup-spawn.c && /tmp/cgroup-spawn MODE N
 *
 * MODE 0: clone(CLONE_VM|CLONE_VFORK), no cgroup (posix_spawn's clone).
 * MODE 1: the same, the child writes "0" to the cgroup's cgroup.procs before exec (orch's way).
 * MODE 2: clone3(CLONE_VFORK|CLONE_INTO_CGROUP) (the kernel places the child; this one copies the
 *         page tables of this tiny program, which costs next to nothing here).
 * MODE 3: clone3(CLONE_VFORK), no cgroup.
 * Each of N spawns of /bin/true gets a fresh cgroup (mkdir before, rmdir after), as orch's steps
 * do; SAME=1 reuses one cgroup instead. Prints the median, p90 and max of clone -> parent resumed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROOT
#define CGROOT "/sys/fs/cgroup/unified"
#endif

static int procs_fd = -1;
static char *child_argv[] = {"/bin/true", 0};

static int child(void *arg) {
    (void)arg;
    if (procs_fd >= 0) write(procs_fd, "0", 1);
    execve(child_argv[0], child_argv, environ);
    _exit(127);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
    double d = *(const double *)a - *(const double *)b;
    return d < 0 ? -1 : d > 0;
}

static pid_t clone3_into(unsigned long long flags, int cgroup_fd) {
    struct clone_args args = {0};
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    args.cgroup = cgroup_fd;
    pid_t pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        execve(child_argv[0], child_argv, environ);
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int mode = atoi(argv[1]), n = atoi(argv[2]), same = getenv("SAME") != NULL;
    const char *base = CGROOT "/cgroup-spawn-bench";
    mkdir(base, 0755);
    static char stack[1 << 16];
    double *waits = calloc(n, sizeof *waits), start = now_ms();
    for (int i = 0; i < n; i++) {
        char dir[256], procs[300];
        snprintf(dir, sizeof dir, "%s/s%d", base, same ? 0 : i);
        snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
        mkdir(dir, 0755);
        int dir_fd = mode == 2 ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        procs_fd = mode == 1 ? open(procs, O_WRONLY | O_CLOEXEC) : -1;
        double before = now_ms();
        pid_t pid;
        if (mode <= 1)
            pid = clone(child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, 0);
        else
            pid = clone3_into(CLONE_VFORK | (mode == 2 ? CLONE_INTO_CGROUP : 0), dir_fd);
        waits[i] = now_ms() - before;
        if (pid < 0) { perror("clone"); return 1; }
        if (procs_fd >= 0) close(procs_fd);
        if (dir_fd >= 0) close(dir_fd);
        waitpid(pid, NULL, 0);
        if (!same) rmdir(dir);
    }
    double total = (now_ms() - start) / n;
    qsort(waits, n, sizeof *waits, by_value);
    printf("mode %d%s: %.3f ms per spawn+wait; clone->resumed median %.3f p90 %.3f max %.3f ms\n",
           mode, same ? " (same cgroup)" : "", total, waits[n / 2], waits[n * 9 / 10], waits[n - 1]);
    if (same) rmdir(CGROOT "/cgroup-spawn-bench/s0");
    rmdir(base);
    return 0;
}
