# Extra workloads of tests/kernels/extra/real (make-dumps.sh --extra): run by the guest's
# init after the harness's workloads. Every setting is tried and its result printed, so
# a kernel without a feature still boots (the programs say what failed in WL lines).
w() { while [ ! -e /run/ready.$1 ]; do sleep 0.2; done; }
T=/sys/kernel/mm/transparent_hugepage
echo always > $T/enabled
echo advise > $T/shmem_enabled 2>/dev/null
# khugepaged must not collapse anything between the SMAPS lines and the dump
echo 86400000 > $T/khugepaged/scan_sleep_millisecs
echo 86400000 > $T/khugepaged/alloc_sleep_millisecs
for o in 64 16; do [ -w $T/hugepages-${o}kB/enabled ] && echo always > $T/hugepages-${o}kB/enabled; done
echo "EXTRA: thp=$(cat $T/enabled) shmem=$(cat $T/shmem_enabled) mthp=$(cat $T/hugepages-*kB/enabled 2>/dev/null | tr '\n' ' ')"
# a 1 GiB page needs 1 GiB of free, movable, aligned memory: drop caches, compact, retry
# (7.2: --mem 3G, 6.1: --mem 5G; without one the 1 GiB file of wl_htlb is on tmpfs)
G=/sys/kernel/mm/hugepages/hugepages-1048576kB
if [ -d $G ]; then
  sync; echo 3 > /proc/sys/vm/drop_caches; echo 1 > /proc/sys/vm/compact_memory
  for t in 1 2 3; do echo 1 > $G/nr_hugepages; [ "$(cat $G/nr_hugepages)" -gt 0 ] && break; sleep 1; done
fi
echo 16 > /proc/sys/vm/nr_hugepages
mkdir -p /dev/hugepages
[ -d $G ] && [ "$(cat $G/nr_hugepages)" -gt 0 ] && mount -t hugetlbfs -o pagesize=1G none /dev/hugepages
echo "EXTRA: 1G pages=$(cat $G/nr_hugepages 2>/dev/null) 2M pages=$(cat /proc/sys/vm/nr_hugepages) $(grep hugepages /proc/mounts | tr '\n' ' ')"
for p in guard htlb shm thpa mlk uffd pout; do $WLBIN/wl_$p & w $p; done
$WLBIN/wl_ksm & w ksm
K=/sys/kernel/mm/ksm
echo 1000 > $K/pages_to_scan; echo 10 > $K/sleep_millisecs; echo 1 > $K/run
n=0; prev=-1
while [ $n -lt 120 ]; do
  s=$(cat $K/pages_sharing); [ "$s" -gt 0 ] && [ "$s" = "$prev" ] && [ "$(cat $K/full_scans)" -ge 3 ] && break
  prev=$s; sleep 0.5; n=$((n+1))
done
echo 0 > $K/run
echo "EXTRA: ksm pages_shared=$(cat $K/pages_shared) pages_sharing=$(cat $K/pages_sharing) full_scans=$(cat $K/full_scans)"
