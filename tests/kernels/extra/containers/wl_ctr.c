/* Files in a container and on real filesystems, for paths (issue 19).
 *
 * wl_ctr (initial mount namespace): a bind mount of a disk directory (/run/vol), a file on the
 * disk filesystem mapped and then unlinked, a tmpfs file mapped and unlinked, a memfd; then a
 * child enters its own mount namespace, mounts an overlay (lower on the disk filesystem,
 * upper/work on tmpfs) on /run/ctr/merged, binds /data/ctr/vol into it, mounts a tmpfs on its
 * /dev/shm, chroots into it and execs the image's /usr/bin/wl_ctrapp (a copy of this program).
 *
 * wl_ctrapp (in the container): maps an image file (overlay lower), a copied-up file (upper),
 * a file created in the container, a deleted file on the overlay, the bind-mounted file and
 * files on the container's tmpfs (one deleted). The kernel prints them from the global root
 * of the container's namespace: /run/ctr/merged/...
 */
#include "wl_common.h"
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>

static void mkdirs(const char *path)
{
	char b[512];
	snprintf(b, sizeof b, "%s", path);
	for (char *p = b + 1; *p; p++)
		if (*p == '/') { *p = 0; mkdir(b, 0755); *p = '/'; }
	mkdir(b, 0755);
}

static void write_file(const char *path, int pages, const char *tag)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0) die(path);
	char *buf = malloc(PG);
	for (int i = 0; i < pages; i++) {
		memset(buf, 'a' + i % 26, PG);
		snprintf(buf, 64, "%s page %04d\n", tag, i);
		if (write(fd, buf, PG) != (ssize_t)PG) die(path);
	}
	free(buf);
	close(fd);
}

static void copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY), out = open(dst, O_CREAT | O_TRUNC | O_WRONLY, 0755);
	if (in < 0 || out < 0) die(dst);
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, n) != n) die(dst);
	close(in);
	close(out);
}

static char *map(const char *path, int oflags, int prot, int mflags, int pages)
{
	int fd = open(path, oflags);
	if (fd < 0) die(path);
	char *m = mmap(NULL, pages * PG, prot, mflags, fd, 0);
	if (m == MAP_FAILED) die(path);
	close(fd);
	return m;
}

/* a new file of `pages` pages, mapped shared read-write, some pages written */
static char *map_new(const char *path, int pages, int unlink_it)
{
	write_file(path, pages, path);
	char *m = map(path, O_RDWR, PROT_READ | PROT_WRITE, MAP_SHARED, pages);
	for (int i = 0; i < pages; i += 2) wr(m, i, 'W');
	if (unlink_it && unlink(path)) die(path);
	return m;
}

static int container_app(int fd)
{
	wl_name = "ctrapp";
	char *img = map("/usr/share/img.bin", O_RDONLY, PROT_READ, MAP_SHARED, 32);
	rd(img, 0); rd(img, 5); rd(img, 20);
	/* opening a lower file for writing copies it up to the upper layer */
	char *conf = map("/etc/conf.bin", O_RDWR, PROT_READ | PROT_WRITE, MAP_PRIVATE, 8);
	wr(conf, 0, 'C'); rd(conf, 1);
	mkdirs("/var/lib");
	char *db = map_new("/var/lib/app.db", 16, 0);
	mkdirs("/tmp");
	char *scratch = map_new("/tmp/scratch.bin", 4, 1);
	char *vol = map("/vol/bind.bin", O_RDONLY, PROT_READ, MAP_SHARED, 16);
	rd(vol, 0); rd(vol, 1);
	char *shm = map_new("/dev/shm/seg", 8, 0);
	char *shm2 = map_new("/dev/shm/gone", 4, 1);
	WL("img=%p conf=%p db=%p scratch=%p vol=%p shm=%p shmgone=%p", img, conf, db, scratch,
	   vol, shm, shm2);
	if (write(fd, "x", 1) != 1) die("pipe");
	close(fd);
	sleep_forever();
	return 0;
}

static void container(int fd)
{
	const char *ovl = "lowerdir=/data/ctr/lower,upperdir=/run/ctr/upper,workdir=/run/ctr/work";
	if (unshare(CLONE_NEWNS)) die("unshare");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) die("make-rprivate");
	if (mount("overlay", "/run/ctr/merged", "overlay", 0, ovl)) die("mount overlay");
	mkdirs("/run/ctr/merged/vol");
	if (mount("/data/ctr/vol", "/run/ctr/merged/vol", NULL, MS_BIND, NULL)) die("bind vol");
	mkdirs("/run/ctr/merged/dev/shm");
	if (mount("shm", "/run/ctr/merged/dev/shm", "tmpfs", 0, "size=4m")) die("tmpfs shm");
	if (chroot("/run/ctr/merged") || chdir("/")) die("chroot");
	char a[16];
	snprintf(a, sizeof a, "%d", fd);
	execl("/usr/bin/wl_ctrapp", "wl_ctrapp", a, (char *)NULL);
	die("exec wl_ctrapp");
}

int main(int argc, char **argv)
{
	if (argc > 1) return container_app(atoi(argv[1]));
	wl_name = "ctr";
	mkdirs("/data/ctr/lower/usr/bin"); mkdirs("/data/ctr/lower/usr/share");
	mkdirs("/data/ctr/lower/etc"); mkdirs("/data/ctr/vol");
	mkdirs("/run/ctr/upper"); mkdirs("/run/ctr/work"); mkdirs("/run/ctr/merged");
	mkdirs("/run/vol");
	write_file("/data/ctr/lower/usr/share/img.bin", 32, "img");
	write_file("/data/ctr/lower/etc/conf.bin", 8, "conf");
	write_file("/data/ctr/vol/bind.bin", 16, "bind");
	copy_file("/proc/self/exe", "/data/ctr/lower/usr/bin/wl_ctrapp");
	sync();
	/* initial namespace: a bind mount of a disk directory, deleted files, a memfd */
	if (mount("/data/ctr/vol", "/run/vol", NULL, MS_BIND, NULL)) die("bind /run/vol");
	char *bind = map("/run/vol/bind.bin", O_RDONLY, PROT_READ, MAP_SHARED, 16);
	rd(bind, 0); rd(bind, 3);
	char *gone = map_new("/data/ctr/gone.bin", 8, 1);
	char *tgone = map_new("/run/ctr/tmpgone.bin", 4, 1);
	int mfd = syscall(SYS_memfd_create, "wl_ctr", 0);
	if (mfd < 0 || ftruncate(mfd, 4 * PG)) die("memfd");
	char *mem = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mem == MAP_FAILED) die("memfd mmap");
	wr(mem, 0, 'M'); wr(mem, 2, 'M');
	WL("bind=%p gone=%p tmpgone=%p memfd=%p", bind, gone, tgone, mem);
	int p[2];
	if (pipe(p)) die("pipe");
	pid_t c = fork();
	if (c < 0) die("fork");
	if (c == 0) { close(p[0]); container(p[1]); }
	close(p[1]);
	char x;
	if (read(p[0], &x, 1) != 1) WL("container=failed");
	else WL("container=%d", (int)c);
	mark_ready("ctr");
	sleep_forever();
}
