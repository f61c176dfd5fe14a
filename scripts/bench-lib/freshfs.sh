# shellcheck shell=bash
# Fresh file systems for scripts/bench (--fresh-fs), and what file system a directory is on.
#
#   fresh_fs_mount DIR       a new ext4 image (FRESH_FS_SIZE, sparse, in FRESH_IMG_DIR), made
#                            with its inode tables and journal written out (no ext4lazyinit
#                            thread zeroing them during a measurement), attached to a loop
#                            device with direct I/O (no second page cache) and mounted on DIR
#                            (created if missing). FRESH_FS_JOURNAL=0: without a journal.
#   fresh_fs_umount DIR      unmounts DIR, detaches its loop device, deletes the image.
#   fresh_fs_umount_all      the same for every image still mounted (the EXIT trap).
#   disk_counters DIR        "COMMITS FLUSHES WRITES": the journal commits (jbd2) of the file
#                            system DIR is on, and the cache flushes and write requests its
#                            block device has completed, so far (-1 for what is unknown).
#                            Differences over a phase are that phase's disk work when the
#                            device is the server's alone (a --fresh-fs image).
#   fs_info DIR              JSON: {"dir", "source", "fstype", "journal": true|false|null,
#                            "fresh": true|false}. journal is null when the file system is not
#                            ext4 (or cannot be told); for ext4 it is whether jbd2 runs for that
#                            device (/proc/fs/jbd2/DEV-*), which needs no access to the device.
#
# Why: on ext4 without a journal, every inode allocation skips the inodes deleted in the last
# 60 s (360 s while their inode-table block is dirty): fs/ext4/ialloc.c recently_deleted(). A
# run that starts right after tens of thousands of deletions (the previous run's Maildir) pays
# for them on every create. docs/performance.md, section 5.

FRESH_FS_SIZE=${FRESH_FS_SIZE:-4G}
FRESH_MOUNTS=()   # DIR|LOOPDEV|IMAGE of each image mounted by this run

fresh_fs_mount() {
    local dir=$1 img dev opts=()
    img=$FRESH_IMG_DIR/$(basename "$dir")-$RANDOM.img
    mkdir -p "$FRESH_IMG_DIR" "$dir"
    rm -f "$img"
    truncate -s "$FRESH_FS_SIZE" "$img" || return 1
    [[ ${FRESH_FS_JOURNAL:-1} -eq 1 ]] || opts=(-O ^has_journal)
    # One inode per 8 KiB: a full run writes ~150,000 Maildir files of 5 KB into one image.
    if ! mkfs.ext4 -q -F -i 8192 -E lazy_itable_init=0,lazy_journal_init=0 "${opts[@]}" "$img" >&2; then
        rm -f "$img"
        return 1
    fi
    dev=$(losetup --find --show --direct-io=on "$img" 2>/dev/null || losetup --find --show "$img") || {
        rm -f "$img"
        return 1
    }
    if ! mount -t ext4 "$dev" "$dir"; then
        losetup -d "$dev" 2>/dev/null || true
        rm -f "$img"
        return 1
    fi
    chmod 755 "$dir"
    FRESH_MOUNTS+=("$dir|$dev|$img")
}

fresh_fs_umount() {
    local dir=$1 entry d dev img i keep=()
    for entry in "${FRESH_MOUNTS[@]}"; do
        IFS='|' read -r d dev img <<<"$entry"
        if [[ $d != "$dir" ]]; then
            keep+=("$entry")
            continue
        fi
        for ((i = 0; i < 50; i++)); do
            umount "$d" 2>/dev/null && break
            sleep 0.2
        done
        mountpoint -q "$d" && umount -l "$d" 2>/dev/null
        losetup -d "$dev" 2>/dev/null || true
        rm -f "$img"
    done
    FRESH_MOUNTS=("${keep[@]}")
}

fresh_fs_umount_all() {
    local entry
    for entry in "${FRESH_MOUNTS[@]}"; do
        fresh_fs_umount "${entry%%|*}"
    done
}

fs_info() {
    local dir=$1 fresh=false src fstype dev journal=null entry
    for entry in "${FRESH_MOUNTS[@]}"; do
        [[ ${entry%%|*} == "$dir" ]] && fresh=true
    done
    read -r src fstype < <(findmnt -n -o SOURCE,FSTYPE -T "$dir" 2>/dev/null || echo "? ?")
    if [[ $fstype == ext4 && -n $src ]]; then
        dev=$(basename "$(readlink -f "$src" 2>/dev/null || echo "$src")")
        if [[ -d /sys/fs/ext4/$dev ]]; then
            journal=false
            compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null && journal=true
        fi
    fi
    printf '{"dir": "%s", "source": "%s", "fstype": "%s", "journal": %s, "fresh": %s}\n' \
        "$dir" "$src" "$fstype" "$journal" "$fresh"
}

# fs_describe JSON: "ext4 on /dev/vda, no journal" (for the log).
fs_describe() {
    python3 -c '
import json, sys
f = json.loads(sys.argv[1])
j = {True: "journal", False: "no journal", None: "journal unknown"}[f.get("journal")]
print("%s on %s, %s%s" % (f.get("fstype"), f.get("source"), j, ", fresh image" if f.get("fresh") else ""))' "$1"
}

disk_counters() {
    local src dev commits=-1 flushes=-1 writes=-1 info
    src=$(findmnt -n -o SOURCE -T "$1" 2>/dev/null || true)
    dev=$(basename "$(readlink -f "$src" 2>/dev/null || echo "$src")")
    if [[ -n $dev ]]; then
        info=$(compgen -G "/proc/fs/jbd2/$dev-*/info" | head -1 || true)
        [[ -n $info && -r $info ]] && commits=$(awk 'NR == 1 {print $1}' "$info")
        if [[ -r /sys/class/block/$dev/stat ]]; then
            read -r writes flushes < <(awk '{print $5, (NF >= 16 ? $16 : -1)}' "/sys/class/block/$dev/stat")
        fi
    fi
    echo "$commits $flushes $writes"
}
