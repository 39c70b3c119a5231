/* lskvctl snapshot status|restore: a backup `etcdctl snapshot save` wrote
 * from lskvd (docs/backup-format.md). Both read and check the whole file
 * with the source's data key first; restore then makes a new data dir that
 * lskvd finishes on its first start (statemachine/restore.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/hex.h"
#include "config/datadir.h"
#include "config/members.h"
#include "crypto/keyfile.h"
#include "lskvctl.h"
#include "statemachine/restore.h"

struct progress {
    const char *cmd;
    time_t last;
};

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
    struct progress *p = arg;
    time_t now = time(NULL);
    if (done == total || now != p->last) {
        p->last = now;
        fprintf(stderr, "lskvctl: %s: checked %" PRIu64 " of %" PRIu64 " bytes (%d%%)\n",
                p->cmd, done, total, total ? (int)(done * 100 / total) : 100);
    }
}

/* Opens and checks FILE with --source-data-key; prints why not. */
static int open_backup(const char *cmd, const char *file, const char *key_path,
                       struct restore_source *src)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint8_t key[BACKUP_KEY_BYTES];
    if (file == NULL || key_path == NULL) {
        lskvctl_fail(cmd, "need FILE and --source-data-key (the data.key of any member of "
                     "the cluster the backup was taken from)");
        return EXIT_USAGE;
    }
    int rv = keyfile_load_or_create(key_path, key, sizeof key, false, NULL, errmsg);
    if (rv != 0) {
        lskvctl_fail(cmd, "--source-data-key: %s", errmsg);
        return EXIT_USAGE;
    }
    struct progress p = {cmd, 0};
    rv = restore_source_open(src, file, key, on_progress, &p, errmsg);
    explicit_bzero(key, sizeof key);
    if (rv != 0) {
        lskvctl_fail(cmd, "refusing the backup: %s", errmsg);
        return rv < 0 && rv > -4096 ? EXIT_USAGE : EXIT_CHECK_FAILED;
    }
    return 0;
}

static void print_source(const struct restore_source *s)
{
    char root[65];
    hex_encode(s->ledger_root, 32, root);
    printf("source cluster id: %016" PRIx64 "\nsource member id: %016" PRIx64
           "\nrevision: %" PRId64 "\nrecords: %" PRIu64 "\nledger size: %" PRIu64
           "\nledger root: %s\n",
           s->header.cluster_id, s->header.member_id, s->summary.revision,
           s->summary.records, s->ledger_size, root);
}

int cmd_snapshot_status(int argc, char **argv)
{
    const char *key = lskvctl_opt(argc, argv, "--source-data-key");
    const char *file = lskvctl_positional(argc, argv);
    struct restore_source src;
    int rv = open_backup("snapshot status", file, key, &src);
    if (rv != 0)
        return rv;
    print_source(&src);
    restore_source_close(&src);
    return 0;
}

static int write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return -errno;
    int rv = write(fd, buf, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : -EIO;
    close(fd);
    return rv;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = -1, rv = 0;
    if (in < 0)
        return -errno;
    if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0) {
        rv = -errno;
        close(in);
        return rv;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) {
            rv = -EIO;
            break;
        }
    if (n < 0 || fsync(out) != 0)
        rv = -EIO;
    close(in);
    close(out);
    return rv;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -errno;
    int rv = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rv;
}

static void remove_tree(const char *dir)
{
    static const char *const files[] = {RESTORE_BACKUP, RESTORE_KEY, RESTORE_IDS};
    char p[4200];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/" RESTORE_DIR, dir);
    rmdir(p);
    rmdir(dir);
}

/* Splits a comma-separated list in place. */
static size_t split(char *s, char **out, size_t max)
{
    size_t n = 0;
    for (char *t = strtok(s, ","); t != NULL && n < max; t = strtok(NULL, ","))
        out[n++] = t;
    return n;
}

int cmd_snapshot_restore(int argc, char **argv)
{
    const char *cmd = "snapshot restore";
    const char *dir = lskvctl_opt(argc, argv, "--data-dir");
    const char *name = lskvctl_opt(argc, argv, "--name");
    const char *cluster = lskvctl_opt(argc, argv, "--initial-cluster");
    const char *token = lskvctl_opt(argc, argv, "--initial-cluster-token");
    const char *peers = lskvctl_opt(argc, argv, "--initial-advertise-peer-urls");
    const char *key = lskvctl_opt(argc, argv, "--source-data-key");
    const char *file = lskvctl_positional(argc, argv);
    /* etcd's defaults for the flags left out */
    name = name ? name : "default";
    token = token ? token : "etcd-cluster";
    peers = peers ? peers : "http://localhost:2380";
    char default_cluster[512];
    if (cluster == NULL) {
        snprintf(default_cluster, sizeof default_cluster, "%s=%s", name, peers);
        cluster = default_cluster;
    }
    if (dir == NULL) {
        lskvctl_fail(cmd, "need --data-dir (a new directory)");
        return EXIT_USAGE;
    }
    /* etcd refuses an existing data dir; so do we (an empty one is fine). */
    DIR *dd = opendir(dir);
    if (dd != NULL) {
        struct dirent *e;
        bool empty = true;
        while ((e = readdir(dd)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                empty = false;
        closedir(dd);
        if (!empty) {
            lskvctl_fail(cmd, "data-dir \"%s\" exists", dir);
            return EXIT_USAGE;
        }
    }
    /* The new member and cluster ids, derived as etcd's restore derives
     * them: from the flags, as a new cluster's (config/members.h). */
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct members m;
    char peers_copy[1024];
    char *urls[16];
    snprintf(peers_copy, sizeof peers_copy, "%s", peers);
    size_t n_urls = split(peers_copy, urls, 16);
    int rv = members_parse(cluster, token, &m, errmsg);
    if (rv == 0)
        rv = members_find_local(&m, name, urls, n_urls, NULL, errmsg);
    if (rv != 0) {
        members_free(&m);
        lskvctl_fail(cmd, "%s", errmsg);
        return EXIT_USAGE;
    }
    struct datadir_ids ids = {m.cluster_id, m.m[m.self].id};
    members_free(&m);

    struct restore_source src;
    if ((rv = open_backup(cmd, file, key, &src)) != 0)
        return rv;

    /* Everything goes into a sibling directory first, renamed into place at
     * the end: a failed restore leaves nothing behind. */
    char tmp[4096], p[4200];
    snprintf(tmp, sizeof tmp, "%s.restoring-%ld", dir, (long)getpid());
    uint8_t tag[DATADIR_TAG_BYTES] = {0};
    char ids_text[DATADIR_IDS_TEXT_BYTES];
    datadir_ids_format(&ids, tag, ids_text);
    const char *step = "mkdir";
    if (mkdir(tmp, 0700) != 0)
        goto fail;
    snprintf(p, sizeof p, "%s/" RESTORE_DIR, tmp);
    if (mkdir(p, 0700) != 0)
        goto fail;
    step = "copy the backup";
    snprintf(p, sizeof p, "%s/" RESTORE_BACKUP, tmp);
    if ((rv = copy_file(file, p)) != 0) {
        errno = -rv;
        goto fail;
    }
    step = "write the key";
    snprintf(p, sizeof p, "%s/" RESTORE_KEY, tmp);
    if ((rv = write_file(p, src.key, sizeof src.key, 0600)) != 0) {
        errno = -rv;
        goto fail;
    }
    step = "write the ids";
    snprintf(p, sizeof p, "%s/" RESTORE_IDS, tmp);
    if ((rv = write_file(p, ids_text, sizeof ids_text, 0600)) != 0) {
        errno = -rv;
        goto fail;
    }
    snprintf(p, sizeof p, "%s/" RESTORE_DIR, tmp);
    step = "rename into place";
    if (fsync_dir(p) != 0 || fsync_dir(tmp) != 0 || (rmdir(dir) != 0 && errno != ENOENT) ||
        rename(tmp, dir) != 0)
        goto fail;
    printf("restored snapshot into %s: cluster %016" PRIx64 ", member %016" PRIx64 "\n", dir,
           ids.cluster_id, ids.member_id);
    print_source(&src);
    printf("start lskvd --data-dir %s with the same --name, --initial-cluster, "
           "--initial-cluster-token and --initial-advertise-peer-urls; it imports the backup "
           "on its first start\n", dir);
    restore_source_close(&src);
    return 0;
fail:
    lskvctl_fail(cmd, "%s: %s: %s", tmp, step, strerror(errno));
    remove_tree(tmp);
    restore_source_close(&src);
    return EXIT_USAGE;
}
