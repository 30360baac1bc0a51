#!/bin/sh
# PID 1 of the power-cut guest (scripts/test-powercut.sh): no systemd, only what the test
# needs. Mounts the kernel's file systems, brings up lo (the delivery sink listens on
# 127.0.0.1; the guest has no other network), makes the second serial port (/dev/ttyS1, a
# file the host reads while the guest runs) raw, then hands over to guest.py with the
# kernel's command line (pc.mode=cut|verify, pc.scenario=..., pc.cut=N, pc.durability=...).
# In a cut boot guest.py never returns: the host kills qemu. When it does return (a verify
# boot, or a cut boot that failed), the guest powers off; panic=-1 on the command line
# makes qemu exit should this script ever end.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mount -o remount,rw /
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
ip link set lo up
# Raw: no \n -> \r\n, no echo; every write() a process makes is one piece of the file.
stty -F /dev/ttyS1 raw -echo 115200

python3 -u /powercut/guest.py $(cat /proc/cmdline) >/dev/console 2>&1
echo "powercut-guest: guest.py exited with status $?" >/dev/console
sync
echo o >/proc/sysrq-trigger
sleep 60
