# make-dumps.sh --extra: started by the guest's init (busybox sh); $WLBIN = the bin directory
$WLBIN/wl_ctr &
n=0
while [ ! -e /run/ready.ctr ] && [ $n -lt 120 ]; do sleep 0.5; n=$((n+1)); done
grep -E 'overlay|/run/vol|shm' /proc/mounts
