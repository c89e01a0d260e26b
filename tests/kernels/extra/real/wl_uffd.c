/* userfaultfd: an anon range registered MISSING (half filled by UFFDIO_COPY/ZEROPAGE), an
 * anon range registered WP with written pages write-protected, a shmem range registered WP. */
#include "wl_common.h"
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>
/* Register len bytes at p write-protect mode and write-protect the first wp_len of them. */
static int register_wp(int u, unsigned char *p, unsigned long len, unsigned long wp_len)
{
	struct uffdio_register r = { .range = { (unsigned long)p, len }, .mode = UFFDIO_REGISTER_MODE_WP };
	if (ioctl(u, UFFDIO_REGISTER, &r)) { WL("register wp %p errno=%d", p, errno); return -1; }
	struct uffdio_writeprotect wp = { .range = { (unsigned long)p, wp_len }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	if (ioctl(u, UFFDIO_WRITEPROTECT, &wp)) { WL("writeprotect %p errno=%d", p, errno); return -1; }
	return 0;
}

int main(void)
{
	wl_name = "uffd";
	int u = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (u < 0) { WL("userfaultfd=FAILED errno=%d", errno); mark_ready(wl_name); sleep_forever(); }
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(u, UFFDIO_API, &api)) die("UFFDIO_API");
	unsigned char *m = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) die("mmap");
	struct uffdio_register reg = { .range = { (unsigned long)m, 32 * PG }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(u, UFFDIO_REGISTER, &reg)) WL("register missing errno=%d", errno);
	unsigned char *src = malloc(PG);
	memset(src, 0x33, PG);
	for (int i = 0; i < 8; i++) {
		struct uffdio_copy cp = { .dst = (unsigned long)m + i * PG, .src = (unsigned long)src, .len = PG };
		if (ioctl(u, UFFDIO_COPY, &cp)) WL("copy errno=%d", errno);
	}
	struct uffdio_zeropage zp = { .range = { (unsigned long)m + 8 * PG, 4 * PG } };
	if (ioctl(u, UFFDIO_ZEROPAGE, &zp)) WL("zeropage errno=%d", errno);
	unsigned char *w = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w == MAP_FAILED) die("mmap w");
	for (int i = 0; i < 16; i++) wr(w, i, 5);
	register_wp(u, w, 16 * PG, 8 * PG);
	unsigned char *s = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED) die("mmap s");
	for (int i = 0; i < 8; i++) wr(s, i, 6);
	if (!register_wp(u, s, 16 * PG, 16 * PG))
		madvise(s, 4 * PG, MADV_DONTNEED);   /* PTE markers keep the protection of zapped pages */
	WL("missing=%p wp=%p shmemwp=%p", m, w, s);
	mark_ready(wl_name);
	sleep_forever();
}
