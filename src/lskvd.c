/* lskvd: configuration, wiring, signals and shutdown order.
 *
 * Start: parse flags -> data dir (config/datadir.h: new only when missing or
 * empty, else every plain file must be there) -> data key, ids (tagged under
 * it) -> service and node identity (identity/), ledger secret -> ledger
 * (ledger/: re-opened, tail checked and repaired) -> the raft log checked -> in a
 * multi-member cluster, unless this run made the data dir, the rollback probe
 * (net/probe_links.h: refused if the data dir was rolled back or another process
 * of this member is live) -> record store (untrusted engine) -> key index
 * -> state machine -> consensus (restores the snapshot, replays the log; the
 * ledger checks entries it already holds) -> a barrier, so every committed
 * entry is applied -> listen for clients and start the signer. Stop
 * (SIGINT/SIGTERM): stop the signer and listening, close consensus (pending
 * proposals fail), then the ledger and the store.
 *
 * Signer: on the leader, after every loop iteration (uv_check) and on a timer,
 * ledger_signature_due decides whether to propose a signature entry (every
 * --sig-tx-interval entries or --sig-ms-interval ms while unsigned entries
 * exist); one is in flight at a time. Writes do not wait for signatures. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "api/catchup_driver.h"
#include "common/err.h"
#include "common/hash64.h"
#include "common/file.h"
#include "common/url.h"
#include "common/log.h"
#include "config/config.h"
#include "config/datadir.h"
#include "crypto/keyfile.h"
#include "http/metrics.h"
#include "statemachine/fsm.h"
#include "consensus/node.h"
#include "consensus/raftdir.h"
#include "consensus/reconfig.h"
#include "identity/cert.h"
#include "kv/kvstore.h"
#include "ledger/ledger.h"
#include "net/grpc_server.h"
#include "net/member_net.h"
#include "storage/diskspace.h"
#include "storage/recstore.h"

#define MODULE "lskvd"

struct member_addresses;

struct daemon {
    uv_loop_t *loop;
    struct config config;
    struct datadir dir;
    uint64_t segment_bytes, snapshot_bytes, snapshot_trailing; /* from the disk's size */
    struct attest_policy policy; /* what joining members' reports must pass */
    member_net *net;             /* peer port: raft, forwarding, joins */
    struct join_key join_key;    /* a joining member's key until it is installed */
    uint8_t data_key[AEAD_KEY_BYTES];
    uint8_t ledger_secret[LEDGER_SECRET_BYTES];
    cert_service *service;
    cert_node *identity;
    ledger *ledger;
    uv_check_t sig_check;
    uv_timer_t sig_timer;
    bool sig_in_flight;
    uint64_t cluster_id;
    uint64_t member_id;
    recstore *records;
    struct diskspace space; /* NOSPACE alarm, quota, free-space reserve */
    kvstore *kv;
    lessor *leases;
    watch_hub *watch;
    struct fsm fsm;
    consensus_node *node;
    struct catchup_driver *catchup; /* a member that holds a raft snapshot back */
    struct corrupt_check *corrupt;  /* --experimental-corrupt-check-time */
    grpc_server *server;
    grpc_server *metrics; /* --listen-metrics-urls; closed before server */
    struct api api;
    struct grpc_method methods[96];
    uv_signal_t sigint, sigterm;
    uv_timer_t retry;
    uv_timer_t publish_retry;
    uv_timer_t member_timer; /* raft's configuration toward the member table */
    /* sync_member_net: the committed membership as last resolved (names
     * point into the table's members: valid while peers_print matches). */
    struct member_net_peer peers[MEMBER_TABLE_MAX];
    char peer_addr[MEMBER_TABLE_MAX][300];
    uint64_t peers_print;
    bool peers_synced;
    uint64_t members_changed_at; /* uv_now when the committed membership
                                    last changed (sync_member_net) */
    uint64_t removed_by; /* the member whose probe answer says this member
                            was removed (on_probe_reply); 0: none */
    struct consensus_seen seen; /* who the leader heard from (reconfig.h) */
    bool members_init_refused;  /* init_members: apply said no; not again */
    uv_timer_t space_timer; /* keeps space.reserve (storage/diskspace.h) */
    bool stall_logged;      /* the stalled apply was logged */
    int exit_code;
    bool stopping;
    bool serving; /* past the start-up checks: clients are answered */
    bool consensus_opened; /* consensus_open was called: the net closes after it */
    /* A data dir made by `lskvctl snapshot restore` (statemachine/restore.h) */
    bool has_restore;               /* restore/ holds a backup */
    bool restore_pending;           /* ... not yet applied (no restore/done) */
    bool restore_in_flight;         /* the founder's RESTORE is proposed */
    struct restore_source restore;  /* checked at start */
    /* etcd's server metrics (add_etcd_series) */
    struct metrics_histogram wal_fsync;      /* raft log appends */
    struct metrics_histogram backend_commit; /* engine batch + ledger flush */
    int (*fsm_flush)(void *data);            /* the state machine's, timed */
    uint64_t last_leader, leader_changes;
    char server_id_label[40], server_version_label[40], cluster_version_label[40];
    struct datadir_ids restore_ids; /* the ids lskvctl derived */
    struct member_addresses *addrs; /* from open_daemon to open_consensus */
    struct raftdir_info raft_info;  /* what the raft dir held at the start */
};

static void log_config_line(const char *line)
{
    LOG_INFO(MODULE, "config: %s", line);
}

static int make_dir(const char *path, char *errmsg)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: mkdir: %s", path, strerror(errno));
        return rv;
    }
    return 0;
}

/* Loads the secret data_dir/name (mode 0600), making it only in a fresh
 * data dir (config/datadir.h). */
static int load_secret(struct daemon *d, const char *name, uint8_t *out, size_t len,
                       const char *what, char *errmsg)
{
    bool created = false;
    int rv = datadir_load_secret(&d->dir, name, out, len, &created, errmsg);
    if (rv == 0 && created)
        LOG_INFO(MODULE, "made a new %s in %s/%s", what, d->dir.path, name);
    return rv;
}

/* Loads the cluster and member ids (tagged under the data key), making
 * them only in a fresh data dir. */
static int load_ids(struct daemon *d, char *errmsg)
{
    struct datadir_ids ids = {0, 0};
    const struct members *m = &d->config.members; /* etcd's ids, for a fresh dir */
    struct datadir_ids derived = {m->cluster_id, m->m[m->self].id};
    if (d->has_restore && d->dir.fresh &&
        (derived.cluster_id != d->restore_ids.cluster_id ||
         derived.member_id != d->restore_ids.member_id)) {
        errmsg_printf(errmsg, "%s/" RESTORE_IDS ": this data dir was restored for cluster "
                      "%016" PRIx64 " member %016" PRIx64 ", but the flags give cluster %016"
                      PRIx64 " member %016" PRIx64 ": start with the --name, --initial-cluster, "
                      "--initial-cluster-token and --initial-advertise-peer-urls given to "
                      "lskvctl snapshot restore", d->config.data_dir,
                      d->restore_ids.cluster_id, d->restore_ids.member_id, derived.cluster_id,
                      derived.member_id);
        return LSKV_EINVAL;
    }
    int rv = datadir_load_ids(&d->dir, d->data_key, &derived, &ids, NULL, errmsg);
    d->cluster_id = ids.cluster_id;
    d->member_id = ids.member_id;
    /* A member that joined an existing cluster keeps the ids it was given,
     * whatever --initial-cluster derives. */
    if (rv == 0 && (ids.cluster_id != derived.cluster_id || ids.member_id != derived.member_id) &&
        (rv = members_reassign(&d->config.members, ids.member_id, ids.cluster_id, errmsg)) != 0)
        errmsg_wrapf(errmsg, "%s/ids", d->config.data_dir);
    return rv;
}

static void on_closed_server(void *arg);

/* The metrics listener reads through the client server: it goes first. */
static void on_closed_metrics(void *arg)
{
    struct daemon *d = arg;
    d->metrics = NULL;
    if (d->server != NULL)
        grpc_server_close(d->server, on_closed_server, d);
    else
        on_closed_server(d);
}

/* The heap bytes that are not the trusted core's: the untrusted engine's
 * memtables and block cache (lskv_trusted_bytes in /metrics). The value
 * cache holds decrypted values, so it is trusted (--cache-size bounds it). */
static int64_t untrusted_bytes(void *arg)
{
    struct daemon *d = arg;
    return recstore_engine_mem_bytes(d->records);
}

/* --- Signer ------------------------------------------------------------------ */

static void on_signature_done(void *arg, int status, void *result)
{
    struct daemon *d = arg;
    d->sig_in_flight = false;
    fsm_result_free(result);
    if (status != 0 && status != LSKV_ENOTLEADER && status != LSKV_ESHUTDOWN)
        LOG_WARN(MODULE, "signature entry failed: %s", lskv_strerror(status));
}

static void signer_tick(struct daemon *d)
{
    if (d->stopping || d->sig_in_flight || d->node == NULL || d->ledger == NULL)
        return;
    uint64_t now = uv_now(d->loop);
    if (!ledger_signature_due(d->ledger, now))
        return;
    struct consensus_status st;
    consensus_get_status(d->node, &st);
    if (!st.is_leader || st.fatal != 0)
        return;
    /* Below the floor nothing is proposed; signing resumes when space is back. */
    uint64_t cost = 0;
    if (diskspace_admit_other(&d->space, 0, &cost) != 0)
        return;
    uint8_t *payload = NULL;
    size_t len = 0;
    int rv = ledger_make_signature(d->ledger, d->identity, now, &payload, &len);
    if (rv != 0) {
        LOG_WARN(MODULE, "cannot sign the ledger: %s", lskv_strerror(rv));
        return;
    }
    struct command_meta meta = {.origin_member = d->member_id};
    uint8_t *cmd = NULL;
    size_t cmd_len = 0;
    rv = command_wrap(COMMAND_SIGNATURE, &meta, payload, len, &cmd, &cmd_len);
    free(payload);
    if (rv != 0)
        return;
    rv = consensus_propose(d->node, 0, cmd, cmd_len, on_signature_done, d); /* leader only */
    free(cmd);
    if (rv == 0)
        d->sig_in_flight = true;
    else if (rv != LSKV_ENOTLEADER && rv != LSKV_ETOOMANYREQUESTS) /* retried next tick */
        LOG_WARN(MODULE, "cannot propose a signature: %s", lskv_strerror(rv));
}

/* etcd_server_leader_changes_seen_total: every loop turn looks, so every
 * leader this member learns of is counted (etcd counts on each new lead). */
static void leader_watch(struct daemon *d)
{
    if (d->node == NULL)
        return;
    struct consensus_status st;
    consensus_get_status(d->node, &st);
    if (st.leader_id != 0 && st.leader_id != d->last_leader)
        d->leader_changes++;
    if (st.leader_id != 0)
        d->last_leader = st.leader_id;
}

static void on_sig_check(uv_check_t *h)
{
    leader_watch(h->data);
    signer_tick(h->data);
}

static void on_sig_timer(uv_timer_t *t)
{
    signer_tick(t->data);
}

static void start_signer(struct daemon *d)
{
    uint64_t ms = (uint64_t)d->config.sig_ms_interval;
    uint64_t period = ms / 4 ? ms / 4 : 1;
    uv_check_start(&d->sig_check, on_sig_check);
    uv_timer_start(&d->sig_timer, on_sig_timer, period, period);
}

static void shutdown_daemon(struct daemon *d, int exit_code)
{
    if (d->stopping)
        return;
    d->stopping = true;
    d->exit_code = exit_code;
    LOG_INFO(MODULE, "shutting down");
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->retry, NULL);
    uv_close((uv_handle_t *)&d->publish_retry, NULL);
    uv_close((uv_handle_t *)&d->member_timer, NULL);
    uv_close((uv_handle_t *)&d->space_timer, NULL);
    uv_close((uv_handle_t *)&d->sig_check, NULL);
    uv_close((uv_handle_t *)&d->sig_timer, NULL);
    lease_service_stop(&d->api);
    watch_service_stop(&d->api);
    catchup_driver_stop(d->catchup);
    d->catchup = NULL;
    corrupt_check_stop(d->corrupt);
    d->corrupt = NULL;
    if (d->metrics != NULL)
        grpc_server_close(d->metrics, on_closed_metrics, d);
    else
        on_closed_metrics(d);
}

static void close_member_net(struct daemon *d)
{
    if (d->net != NULL)
        member_net_close(d->net, NULL, NULL);
    d->net = NULL;
}

static void on_closed_node(void *arg)
{
    struct daemon *d = arg;
    d->node = NULL;
    close_member_net(d); /* raft no longer uses the transport */
    LOG_INFO(MODULE, "stopped");
}

/* A failed consensus_open let go of the transport. */
static void on_consensus_released(void *arg)
{
    close_member_net(arg);
}

static void on_closed_server(void *arg)
{
    struct daemon *d = arg;
    d->server = NULL;
    if (d->node != NULL)
        consensus_close(d->node, on_closed_node, d);
    else if (!d->consensus_opened)
        close_member_net(d);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct daemon *d = sig->data;
    LOG_INFO(MODULE, "received %s", strsignal(signum));
    shutdown_daemon(d, 0);
}

static void on_space_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;
    struct consensus_status st;
    consensus_get_status(d->node, &st);
    /* A held snapshot stalls applying too (the catch-up driver logs it). */
    bool no_space = st.stalled && !consensus_restore_held(d->node);
    if (no_space != d->stall_logged) {
        if (no_space)
            LOG_WARN(MODULE, "raising NOSPACE alarm: %s; applying waits for space", d->space.why);
        else
            LOG_INFO(MODULE, "applying again: the disk has room");
        d->stall_logged = no_space;
    }
    diskspace_keep(&d->space);
}

/* Lease and watch series, with etcd's names. */
static uint64_t lease_granted(void *arg)
{
    struct lessor_stats st;
    lessor_stats(((struct daemon *)arg)->leases, &st);
    return st.granted;
}

static uint64_t lease_revoked(void *arg)
{
    struct lessor_stats st;
    lessor_stats(((struct daemon *)arg)->leases, &st);
    return st.revoked;
}

static uint64_t lease_renewed(void *arg)
{
    struct lessor_stats st;
    lessor_stats(((struct daemon *)arg)->leases, &st);
    return st.renewed;
}

static uint64_t lease_expired(void *arg)
{
    return lease_service_expired(&((struct daemon *)arg)->api);
}

static struct watch_stats watch_stats_of(void *arg)
{
    struct watch_stats st;
    watch_hub_stats(((struct daemon *)arg)->watch, &st);
    return st;
}

static uint64_t watchers(void *arg)
{
    return watch_stats_of(arg).watchers;
}

static uint64_t watch_streams(void *arg)
{
    return watch_stats_of(arg).streams;
}

static uint64_t slow_watchers(void *arg)
{
    return watch_stats_of(arg).unsynced;
}

static uint64_t watch_events(void *arg)
{
    return watch_stats_of(arg).events_sent;
}

static void add_lease_and_watch_series(struct daemon *d)
{
    static const struct {
        const char *name, *type, *help;
        metrics_gauge_fn fn;
    } series[] = {
        {"etcd_debugging_lease_granted_total", "counter", "The total number of granted leases.",
         lease_granted},
        {"etcd_debugging_lease_revoked_total", "counter", "The total number of revoked leases.",
         lease_revoked},
        {"etcd_debugging_lease_renewed_total", "counter",
         "The number of renewed leases seen by the leader.", lease_renewed},
        {"etcd_debugging_server_lease_expired_total", "counter",
         "The total number of expired leases.", lease_expired},
        {"etcd_debugging_mvcc_watcher_total", "gauge", "Total number of watchers.", watchers},
        {"etcd_debugging_mvcc_watch_stream_total", "gauge",
         "Total number of watch streams.", watch_streams},
        {"etcd_debugging_mvcc_slow_watcher_total", "gauge",
         "Total number of unsynced slow watchers.", slow_watchers},
        {"etcd_debugging_mvcc_events_total", "counter",
         "Total number of events sent by this member.", watch_events},
    };
    for (size_t i = 0; i < sizeof series / sizeof series[0]; i++)
        grpc_server_add_gauge(d->server, series[i].name, series[i].type, series[i].help,
                              series[i].fn, d);
}

static struct consensus_status status_of(void *arg)
{
    struct daemon *d = arg;
    struct consensus_status st = {0};
    if (d->node != NULL)
        consensus_get_status(d->node, &st);
    return st;
}

static uint64_t has_leader(void *arg)
{
    return status_of(arg).leader_id != 0;
}

static uint64_t is_leader(void *arg)
{
    return status_of(arg).is_leader;
}

static uint64_t leader_changes(void *arg)
{
    return ((struct daemon *)arg)->leader_changes;
}

static uint64_t proposals_committed(void *arg)
{
    return status_of(arg).commit_index;
}

static uint64_t proposals_applied(void *arg)
{
    return status_of(arg).applied_index;
}

static uint64_t proposals_pending(void *arg)
{
    return status_of(arg).inflight;
}

static uint64_t proposals_failed(void *arg)
{
    return status_of(arg).proposals_failed;
}

static uint64_t db_bytes(void *arg)
{
    int64_t n = recstore_disk_bytes(((struct daemon *)arg)->records);
    return n > 0 ? (uint64_t)n : 0;
}

static uint64_t keys_total(void *arg)
{
    return kvstore_key_count(((struct daemon *)arg)->kv);
}

static uint64_t mvcc_ranges(void *arg)
{
    return kvstore_counts(((struct daemon *)arg)->kv).ranges;
}

static uint64_t mvcc_puts(void *arg)
{
    return kvstore_counts(((struct daemon *)arg)->kv).puts;
}

static uint64_t mvcc_deletes(void *arg)
{
    return kvstore_counts(((struct daemon *)arg)->kv).deletes;
}

static uint64_t mvcc_txns(void *arg)
{
    return kvstore_counts(((struct daemon *)arg)->kv).txns;
}

static uint64_t one(void *arg)
{
    (void)arg;
    return 1;
}

static void on_append(void *arg, uint64_t nsec)
{
    metrics_histogram_observe(&((struct daemon *)arg)->wal_fsync, (double)nsec / 1e9);
}

/* The state machine's flush (one engine write and a ledger flush per loop
 * turn of applies) is lskv's backend commit. */
static int timed_flush(void *data)
{
    struct daemon *d = (struct daemon *)(void *)((char *)data - offsetof(struct daemon, fsm));
    uint64_t t0 = uv_hrtime();
    int rv = d->fsm_flush(data);
    metrics_histogram_observe(&d->backend_commit, (double)(uv_hrtime() - t0) / 1e9);
    return rv;
}

/* etcd's names, types and labels for what lskvd has (README "Metrics and
 * health"). */
static void add_etcd_series(struct daemon *d)
{
    static const struct {
        const char *name, *type, *help;
        metrics_gauge_fn fn;
    } series[] = {
        {"etcd_server_has_leader", "gauge",
         "Whether or not a leader exists. 1 is existence, 0 is not.", has_leader},
        {"etcd_server_is_leader", "gauge",
         "Whether or not this member is a leader. 1 if is, 0 otherwise.", is_leader},
        {"etcd_server_leader_changes_seen_total", "counter",
         "The number of leader changes seen.", leader_changes},
        {"etcd_server_proposals_committed_total", "gauge",
         "The total number of consensus proposals committed.", proposals_committed},
        {"etcd_server_proposals_applied_total", "gauge",
         "The total number of consensus proposals applied.", proposals_applied},
        {"etcd_server_proposals_pending", "gauge",
         "The current number of pending proposals to commit.", proposals_pending},
        {"etcd_server_proposals_failed_total", "counter",
         "The total number of failed proposals seen.", proposals_failed},
        {"etcd_mvcc_db_total_size_in_bytes", "gauge",
         "Total size of the underlying database physically allocated in bytes.", db_bytes},
        {"etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
         "Total size of the underlying database logically in use in bytes.", db_bytes},
        {"etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.", keys_total},
        /* etcd 3.4 exports each twice (etcd_debugging_ until 3.5) */
        {"etcd_mvcc_range_total", "counter", "Total number of ranges seen by this member.",
         mvcc_ranges},
        {"etcd_debugging_mvcc_range_total", "counter",
         "Total number of ranges seen by this member.", mvcc_ranges},
        {"etcd_mvcc_put_total", "counter", "Total number of puts seen by this member.",
         mvcc_puts},
        {"etcd_debugging_mvcc_put_total", "counter", "Total number of puts seen by this member.",
         mvcc_puts},
        {"etcd_mvcc_delete_total", "counter", "Total number of deletes seen by this member.",
         mvcc_deletes},
        {"etcd_debugging_mvcc_delete_total", "counter",
         "Total number of deletes seen by this member.", mvcc_deletes},
        {"etcd_mvcc_txn_total", "counter", "Total number of txns seen by this member.",
         mvcc_txns},
        {"etcd_debugging_mvcc_txn_total", "counter", "Total number of txns seen by this member.",
         mvcc_txns},
    };
    for (size_t i = 0; i < sizeof series / sizeof series[0]; i++)
        grpc_server_add_gauge(d->server, series[i].name, series[i].type, series[i].help,
                              series[i].fn, d);
    snprintf(d->server_id_label, sizeof d->server_id_label, "server_id=\"%" PRIx64 "\"",
             d->member_id);
    snprintf(d->server_version_label, sizeof d->server_version_label,
             "server_version=\"%s\"", API_VERSION);
    snprintf(d->cluster_version_label, sizeof d->cluster_version_label,
             "cluster_version=\"3.4\"");
    grpc_server_add_labeled(d->server, "etcd_server_id", "gauge",
                            "Server or member ID in hexadecimal format. 1 for 'server_id' "
                            "label with current ID.", d->server_id_label, one, d);
    grpc_server_add_labeled(d->server, "etcd_server_version", "gauge",
                            "Which version is running. 1 for 'server_version' label with "
                            "current version.", d->server_version_label, one, d);
    grpc_server_add_labeled(d->server, "etcd_cluster_version", "gauge",
                            "Which version is running. 1 for 'cluster_version' label with "
                            "current cluster version", d->cluster_version_label, one, d);
    grpc_server_add_histogram(d->server, "etcd_disk_wal_fsync_duration_seconds",
                              "The latency distributions of fsync called by WAL.",
                              &d->wal_fsync);
    grpc_server_add_histogram(d->server, "etcd_disk_backend_commit_duration_seconds",
                              "The latency distributions of commit called by backend.",
                              &d->backend_commit);
    if (d->net != NULL)
        grpc_server_add_histogram_vec(d->server, "etcd_network_peer_round_trip_time_seconds",
                                      "Round-Trip-Time histogram between peers", "To",
                                      member_net_rtt_series, d->net);
}

static uint64_t gauge_inflight(void *arg)
{
    struct daemon *d = arg;
    struct consensus_status st = {0};
    if (d->node != NULL)
        consensus_get_status(d->node, &st);
    return st.inflight;
}

static uint64_t gauge_inflight_bytes(void *arg)
{
    struct daemon *d = arg;
    struct consensus_status st = {0};
    if (d->node != NULL)
        consensus_get_status(d->node, &st);
    return st.inflight_bytes;
}

static void publish(struct daemon *d);
static void start_serving(struct daemon *d);
static uint64_t random_request_base(void);

static void on_publish_retry(uv_timer_t *t)
{
    publish(t->data);
}

static void on_published(void *arg, int status, void *result)
{
    struct daemon *d = arg;
    struct fsm_result *r = result;
    if (d->stopping) {
        fsm_result_free(r);
        return;
    }
    if (status == 0 && r != NULL && r->rv == 0) {
        LOG_INFO(MODULE, "published local member %016" PRIx64 " (name %s) to cluster %016" PRIx64
                 " through raft, revision %" PRId64, d->member_id, d->config.name,
                 d->cluster_id, kvstore_revision(d->kv));
        start_serving(d);
    } else {
        uv_timer_start(&d->publish_retry, on_publish_retry, 500, 0);
    }
    fsm_result_free(r);
}

/* etcd's publish: this member's name and client URLs go through the log,
 * so every member lists them (statemachine/member_table.h); retried until
 * it commits. */
static bool published_already(struct daemon *d)
{
    struct config *c = &d->config;
    const Etcdserverpb__Member *p = member_table_get(&d->fsm.members, d->member_id);
    if (p == NULL || strcmp(p->name, c->name) != 0 ||
        p->n_clienturls != c->n_advertise_client_urls)
        return false;
    for (size_t i = 0; i < p->n_clienturls; i++)
        if (strcmp(p->clienturls[i], c->advertise_client_urls[i]) != 0)
            return false;
    return true;
}

/* Proposes one of the start-up commands (members_init, publish); cb goes
 * on, a failed proposal is retried by publish (publish_retry). */
static void propose_start_up(struct daemon *d, enum command_op op, const ProtobufCMessage *msg,
                             consensus_done_cb cb)
{
    struct command_meta meta = {.request_id = random_request_base(),
                                .origin_member = d->member_id};
    uint8_t *cmd = NULL;
    size_t len = 0;
    int rv = command_encode(op, &meta, msg, &cmd, &len);
    if (rv == 0)
        rv = consensus_propose(d->node, meta.request_id, cmd, len, cb, d);
    free(cmd);
    if (rv != 0)
        uv_timer_start(&d->publish_retry, on_publish_retry, 500, 0);
}

static void on_members_init(void *arg, int status, void *result)
{
    struct daemon *d = arg;
    struct fsm_result *r = result;
    if (status == 0 && r != NULL && r->rv != 0) {
        /* Refused by apply (cannot happen for a list config/members.c
         * parsed): go on with the bootstrap membership from the flags. */
        LOG_WARN(MODULE, "the bootstrap membership was not committed: %s",
                 lskv_strerror(r->rv));
        d->members_init_refused = true;
    }
    fsm_result_free(r);
    if (d->stopping)
        return;
    if (status == 0)
        publish(d);
    else
        uv_timer_start(&d->publish_retry, on_publish_retry, 500, 0);
}

/* The bootstrap membership goes through the log once (the first entry to
 * apply wins; later ones change nothing), so that the member table every
 * member applies, snapshots and sends to joiners starts from it
 * (statemachine/member_table.h). Only members of a new cluster propose it:
 * a joiner's --initial-cluster is not the bootstrap list. Returns 1 when
 * proposed (on_members_init goes on), 0 when there is nothing to do. */
static int init_members(struct daemon *d)
{
    struct config *c = &d->config;
    if (member_table_initialized(&d->fsm.members) || d->members_init_refused ||
        strcmp(c->initial_cluster_state, "existing") == 0)
        return 0;
    Etcdserverpb__Member list[MEMBERS_MAX], *ptrs[MEMBERS_MAX];
    for (size_t i = 0; i < c->members.n; i++) {
        etcdserverpb__member__init(&list[i]);
        list[i].id = c->members.m[i].id;
        list[i].peerurls = c->members.m[i].peer_urls;
        list[i].n_peerurls = c->members.m[i].n_peer_urls;
        ptrs[i] = &list[i];
    }
    Etcdserverpb__MemberListResponse boot = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    boot.members = ptrs;
    boot.n_members = c->members.n;
    propose_start_up(d, COMMAND_MEMBERS_INIT, &boot.base, on_members_init);
    return 1;
}

static void publish(struct daemon *d)
{
    if (d->stopping)
        return;
    struct config *c = &d->config;
    if (init_members(d) != 0)
        return;
    /* A restart with the same attributes writes nothing (and so also
     * serves on a disk too full to take a write). */
    if (published_already(d)) {
        LOG_INFO(MODULE, "published local member %016" PRIx64 " (name %s) to cluster %016" PRIx64
                 " already, revision %" PRId64, d->member_id, c->name, d->cluster_id,
                 kvstore_revision(d->kv));
        start_serving(d);
        return;
    }
    Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
    m.id = d->member_id;
    m.name = c->name;
    m.clienturls = c->advertise_client_urls;
    m.n_clienturls = c->n_advertise_client_urls;
    propose_start_up(d, COMMAND_MEMBER_ATTRIBUTES, &m.base, on_published);
}

static uint64_t random_request_base(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = (uint64_t)time(NULL) << 24 ^ (uint64_t)getpid();
    return v >> 1; /* room to count up without wrapping to 0 */
}

/* What the committed membership's peers look like: their ids, first peer
 * URLs and names, hashed. */
static uint64_t membership_print(const struct member_table *mt)
{
    uint64_t h = mt->n;
    for (size_t i = 0; i < mt->n; i++) {
        const Etcdserverpb__Member *m = mt->m[i];
        const char *url = m->n_peerurls ? m->peerurls[0] : "", *name = m->name ? m->name : "";
        h = hash_bytes64(h ^ m->id, (const uint8_t *)url, strlen(url));
        h = hash_bytes64(h, (const uint8_t *)name, strlen(name) + 1);
    }
    return h;
}

/* The committed membership's members, each at its first peer URL resolved
 * (d->peers[i] is the table's i-th member), handed to the member network
 * so that forwarding reaches, and links are taken from, members added
 * later. Resolved again only when the membership changed (a resolver may
 * block the loop). Errors: LSKV_EINVAL (a URL does not resolve now),
 * LSKV_ENOTREADY (no membership committed yet), LSKV_ENOMEM. */
static int sync_member_net(struct daemon *d)
{
    const struct member_table *mt = &d->fsm.members;
    if (!member_table_initialized(mt))
        return LSKV_ENOTREADY;
    uint64_t print = membership_print(mt);
    if (d->peers_synced && print == d->peers_print)
        return 0;
    if (print != d->peers_print)
        d->members_changed_at = uv_now(d->loop);
    d->peers_synced = false;
    for (size_t i = 0; i < mt->n; i++) {
        const Etcdserverpb__Member *m = mt->m[i];
        struct url u;
        char why[LSKV_ERRMSG_SIZE];
        if (m->n_peerurls == 0 || url_parse(m->peerurls[0], 0, &u, why) != 0 ||
            url_resolve(&u, NULL, d->peer_addr[i], sizeof d->peer_addr[i], why) != 0)
            return LSKV_EINVAL;
        d->peers[i] = (struct member_net_peer){.id = m->id, .name = m->name,
                                               .address = d->peer_addr[i]};
    }
    int rv = member_net_set_members(d->net, d->peers, mt->n);
    if (rv == 0) {
        d->peers_synced = true;
        d->peers_print = print;
    }
    return rv;
}

/* member_net_set_member_check: the applied membership (applied in step
 * with raft's applied index, which probe answers carry); none yet: listed. */
static bool lists_member(void *arg, uint64_t id)
{
    struct daemon *d = arg;
    const struct member_table *mt = &d->fsm.members;
    return !member_table_initialized(mt) || member_table_get(mt, id) != NULL;
}

/* A follower removed while it could not hear the leader never applies its
 * removal, and the leader no longer replicates to it: the others' answers
 * to its round-trip probes say so (consensus/probe.h; etcd's peers answer
 * a removed member's messages likewise). on_member_timer acts on it. */
static void on_probe_reply(void *arg, uint64_t from, const struct probe_reply *reply)
{
    struct daemon *d = arg;
    if (d->node == NULL || d->removed_by != 0 || consensus_restore_held(d->node) ||
        member_table_get(&d->fsm.members, d->member_id) == NULL)
        return; /* its own membership must list it, at its applied index */
    struct consensus_status st;
    consensus_get_status(d->node, &st);
    if (probe_says_removed(reply, st.applied_index))
        d->removed_by = from;
}

/* From the time raft is open, every member: the member network follows
 * the committed membership (before serving too: a restarted member may
 * need it to reach a leader --initial-cluster does not name). Once
 * serving, every member: stop once the committed membership no longer
 * lists this member (etcd stops a removed member); the leader: raft's
 * configuration toward the committed membership (consensus/reconfig.h). */
static void on_member_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;
    const struct member_table *mt = &d->fsm.members;
    if (d->stopping || d->node == NULL || !member_table_initialized(mt))
        return;
    int synced = sync_member_net(d);
    if (d->removed_by != 0) { /* serving or not: it will never serve */
        LOG_WARN(MODULE, "the member has been permanently removed from the cluster (member %016"
                 PRIx64 " no longer lists it)", d->removed_by);
        shutdown_daemon(d, 0);
        return;
    }
    if (!d->serving)
        return;
    if (member_table_get(mt, d->member_id) == NULL) {
        LOG_WARN(MODULE, "the member has been permanently removed from the cluster");
        shutdown_daemon(d, 0);
        return;
    }
    consensus_seen_update(d->node, &d->seen, uv_now(d->loop));
    if (synced != 0)
        return; /* not now: every member or none */
    struct consensus_status st;
    consensus_get_status(d->node, &st);
    if (!st.is_leader)
        return;
    /* Two heartbeats first: a member removed from raft's configuration is
     * sent nothing more, so it learns that its removal committed (and
     * answers the client that asked it, and stops) only from a heartbeat
     * before that (failing that, from on_probe_reply, seconds later). */
    if (uv_now(d->loop) - d->members_changed_at < 2 * (uint64_t)d->config.heartbeat_interval_ms)
        return;
    struct consensus_want want[MEMBER_TABLE_MAX];
    for (size_t i = 0; i < mt->n; i++)
        want[i] = (struct consensus_want){.id = d->peers[i].id, .address = d->peers[i].address,
                                          .voter = !mt->m[i]->islearner};
    if (consensus_reconcile(d->node, want, mt->n) < 0)
        LOG_WARN(MODULE, "raft configuration change: out of memory");
}

static void start_serving(struct daemon *d)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct config *c = &d->config;
    d->api = (struct api){
        .kv = d->kv,
        .records = d->records,
        .node = d->node,
        .cluster_id = d->cluster_id,
        .member_id = d->member_id,
        .name = c->name,
        .members = &c->members,
        .published = &d->fsm.members,
        .peer_urls = c->members.m[c->members.self].peer_urls, /* sorted, as etcd's */
        .n_peer_urls = c->members.m[c->members.self].n_peer_urls,
        .client_urls = c->advertise_client_urls,
        .n_client_urls = c->n_advertise_client_urls,
        .max_request_bytes = (size_t)c->max_request_bytes,
        .strict_reconfig = c->strict_reconfig_check,
        .seen = &d->seen,
        .limits = {.max_txn_ops = (long)c->max_txn_ops},
        .ledger = d->ledger,
        .space = &d->space,
        .receipt_retry_ms = (uint64_t)(c->sig_ms_interval < 50 ? c->sig_ms_interval : 50),
        .leases = d->leases,
        .loop = d->loop,
        .watch = d->watch,
        .last_request_id = random_request_base(),
        .auth = &d->fsm.auth,
        .bcrypt_cost = (unsigned)c->bcrypt_cost,
        .data_key = d->data_key,
        .sm = fsm_vtable(&d->fsm),
        .client_cert_auth = c->client_cert_auth,
    };
    struct config_token tok;
    if (config_auth_token(c, &tok, errmsg) != 0 ||
        (tok.jwt && jwt_key_load(tok.sign_method, tok.pub_key, tok.priv_key, &d->api.jwt,
                                 errmsg) != 0)) {
        LOG_ERROR(MODULE, "cannot serve clients: --auth-token: %s", errmsg);
        shutdown_daemon(d, 1);
        return;
    }
    d->api.jwt_ttl_ms = (uint64_t)tok.ttl_ms;
    if (auth_tokens_new((uint64_t)c->auth_token_ttl * 1000, &d->api.tokens) != 0) {
        LOG_ERROR(MODULE, "cannot serve clients: out of memory for the auth token table");
        shutdown_daemon(d, 1);
        return;
    }
    size_t n = api_methods(&d->api, d->methods, sizeof d->methods / sizeof d->methods[0]);
    bool made = false; /* --auto-tls: etcd's self-signed client certificate */
    if (config_auto_tls(c, &made, errmsg) != 0) {
        LOG_ERROR(MODULE, "cannot serve clients: --auto-tls: %s", errmsg);
        shutdown_daemon(d, 1);
        return;
    }
    if (c->auto_tls)
        LOG_INFO(MODULE, "--auto-tls: %s %s", made ? "made" : "using", c->cert_file);
    struct grpc_server_config sc = {
        .listen_urls = (const char *const *)c->listen_client_urls,
        .n_listen_urls = c->n_listen_client_urls,
        .tls = {.cert_file = c->cert_file,
                .key_file = c->key_file,
                .trusted_ca_file = c->trusted_ca_file,
                .client_cert_auth = c->client_cert_auth,
                .cipher_suites = c->cipher_suites,
                .crl_file = c->client_crl_file,
                .allowed_hostname = c->client_cert_allowed_hostname},
        /* gRPC's own limit sits above etcd's request limit, as in etcd
         * (max-request-bytes + 512 KiB of slack). */
        .max_recv_message_bytes = (size_t)c->max_request_bytes + 512 * 1024,
        .max_concurrent_streams = config_max_streams(c),
        .max_buffered_request_bytes = (size_t)c->max_buffered_request_bytes,
        .methods = d->methods,
        .n_methods = n,
        .json_gateway = true,
        .server_version = API_VERSION,
    };
    int rv = grpc_server_open(d->loop, &sc, &d->server, errmsg);
    if (rv != 0) {
        LOG_ERROR(MODULE, "cannot serve clients: %s", errmsg);
        shutdown_daemon(d, 1);
        return;
    }
    if (c->n_listen_metrics_urls > 0) { /* etcd's /metrics and /health listener */
        struct grpc_server_config mc = {
            .listen_urls = (const char *const *)c->listen_metrics_urls,
            .n_listen_urls = c->n_listen_metrics_urls,
            .tls = sc.tls,
            .json_gateway = true,
            .metrics_of = d->server,
        };
        if (grpc_server_open(d->loop, &mc, &d->metrics, errmsg) != 0) {
            LOG_ERROR(MODULE, "cannot serve metrics: %s", errmsg);
            shutdown_daemon(d, 1);
            return;
        }
        for (size_t i = 0; i < c->n_listen_metrics_urls; i++) /* etcd's line */
            LOG_INFO(MODULE, "listening for metrics on %s", c->listen_metrics_urls[i]);
    }
    add_lease_and_watch_series(d);
    add_etcd_series(d);
    grpc_server_add_gauge(d->server, "lskv_proposals_in_flight", "gauge",
                          "Raft proposals not yet applied (etcd's limit: 5000).",
                          gauge_inflight, d);
    grpc_server_add_gauge(d->server, "lskv_proposal_bytes_in_flight", "gauge",
                          "Sealed bytes of the proposals not yet applied "
                          "(--max-buffered-request-bytes).",
                          gauge_inflight_bytes, d);
    metrics_set_untrusted(untrusted_bytes, d);
    start_signer(d);
    /* As etcd's Promote: every lease gets its whole TTL again, plus an
     * election timeout, so none expires early because of the restart. */
    if (lease_service_start(&d->api, (uint64_t)c->election_timeout_ms) != 0 ||
        watch_service_start(&d->api) != 0 ||
        corrupt_check_start(&d->api, (uint64_t)c->corrupt_check_ms, &d->corrupt) != 0) {
        LOG_ERROR(MODULE, "cannot start the lease, watch and corruption check timers: out of "
                  "memory");
        shutdown_daemon(d, 1);
        return;
    }
    diskspace_keep(&d->space);
    uv_timer_start(&d->space_timer, on_space_timer, 1000, 1000);
    /* A restart on a full disk serves reads and reports NOSPACE at once. */
    uint64_t cost = 0;
    if (diskspace_admit_put(&d->space, recstore_disk_bytes(d->records), 0, &cost) != 0)
        LOG_WARN(MODULE, "raising NOSPACE alarm: %s; writes that add data are refused until "
                 "`etcdctl alarm disarm`", d->space.why);
    for (size_t i = 0; i < c->n_listen_client_urls; i++)
        LOG_INFO(MODULE, "ready to serve client requests on %s", c->listen_client_urls[i]);
    /* etcd's e2e suite and tools wait for this line and a "published" one */
    LOG_INFO(MODULE, "enabled capabilities for version 3.4");
}

static void try_ready(struct daemon *d);

static void on_retry(uv_timer_t *t)
{
    try_ready(t->data);
}

/* Every committed entry is applied now: the ledger may not hold entries
 * past what the raft log replayed (its tail was lost or cut), or the node
 * would serve and sign a history without them. */
static int check_replayed(struct daemon *d, char *errmsg)
{
    struct ledger_position pos;
    struct consensus_status st;
    ledger_position(d->ledger, &pos);
    consensus_get_status(d->node, &st);
    if (pos.index <= st.applied_index)
        return 0;
    errmsg_printf(errmsg, "%s/raft: the raft log ends at index %" PRIu64 " but the ledger (%s/"
                  "ledger) holds entries up to txid %" PRIu64 ".%" PRIu64 " (revision %" PRId64
                  "): the raft log lost its tail", d->config.data_dir, st.applied_index,
                  d->config.data_dir, pos.term, pos.index, pos.revision);
    return LSKV_ECORRUPT;
}

static void on_restore_done(void *arg, int status, void *result)
{
    struct daemon *d = arg;
    d->restore_in_flight = false;
    fsm_result_free(result);
    if (status != 0 && status != LSKV_ENOTLEADER && status != LSKV_ESHUTDOWN)
        LOG_WARN(MODULE, "the RESTORE command failed: %s", lskv_strerror(status));
}

/* A restored cluster serves once its RESTORE command is applied: the
 * founder proposes it, every member waits for it. Returns true once
 * applied (restore/done is written then); else retries try_ready. */
static bool restore_applied(struct daemon *d)
{
    char path[DATADIR_PATH_MAX + 32], errmsg[LSKV_ERRMSG_SIZE];
    if (d->fsm.restored) {
        int fd = -1;
        if (datadir_path(&d->dir, RESTORE_DONE, path, sizeof path, errmsg) != 0 ||
            (fd = open(path, O_WRONLY | O_CREAT, 0600)) < 0 || fsync(fd) != 0)
            LOG_WARN(MODULE, "cannot write %s: a restart will propose the restore again "
                     "(a no-op)", path);
        if (fd >= 0)
            close(fd);
        d->restore_pending = false;
        LOG_INFO(MODULE, "restored revision %" PRId64 " of cluster %016" PRIx64 " (its ledger "
                 "at %" PRIu64 " entries) as the first ledger entry of cluster %016" PRIx64,
                 d->restore.summary.revision, d->restore.header.cluster_id,
                 d->restore.ledger_size, d->cluster_id);
        return true;
    }
    const struct members *m = &d->config.members;
    if (m->m[m->self].id == m->m[0].id && !d->restore_in_flight) {
        Lskvcommandpb__Restore req;
        restore_command(&d->restore, &req);
        /* A request id of its own: a founder that does not lead forwards it
         * (request id 0 is leader-only) and hears its outcome. */
        struct command_meta meta = {.request_id = random_request_base(),
                                    .origin_member = d->member_id};
        uint8_t *cmd = NULL;
        size_t len = 0;
        int rv = command_encode(COMMAND_RESTORE, &meta, &req.base, &cmd, &len);
        if (rv == 0)
            rv = consensus_propose(d->node, meta.request_id, cmd, len, on_restore_done, d);
        free(cmd);
        if (rv == 0) {
            d->restore_in_flight = true;
            LOG_INFO(MODULE, "proposing the RESTORE of revision %" PRId64 " of cluster %016"
                     PRIx64, d->restore.summary.revision, d->restore.header.cluster_id);
        } else if (rv != LSKV_ENOTLEADER) {
            LOG_WARN(MODULE, "cannot propose the RESTORE: %s", lskv_strerror(rv));
        }
    }
    uv_timer_start(&d->retry, on_retry, 20, 0);
    return false;
}

static void on_ready_barrier(void *arg, int status, void *result)
{
    (void)result;
    struct daemon *d = arg;
    if (d->stopping)
        return;
    /* No leader yet, or the leader's read index did not come in time (a
     * member catching up, an election): ask again. */
    if (status == LSKV_ENOTLEADER || status == LSKV_ETIMEOUT) {
        uv_timer_start(&d->retry, on_retry, 20, 0);
        return;
    }
    if (status != 0) {
        LOG_ERROR(MODULE, "refusing to start: log replay failed: %s", lskv_strerror(status));
        shutdown_daemon(d, 1);
        return;
    }
    char errmsg[LSKV_ERRMSG_SIZE];
    if (check_replayed(d, errmsg) != 0) {
        LOG_ERROR(MODULE, "refusing to start: %s", errmsg);
        shutdown_daemon(d, 1);
        return;
    }
    if (d->restore_pending && !restore_applied(d))
        return; /* restore_applied retries until it is */
    /* A member removed while it was down learns it here, before it answers
     * anyone (etcd's peers answer it "removed" and it stops). */
    if (member_table_initialized(&d->fsm.members) &&
        member_table_get(&d->fsm.members, d->member_id) == NULL) {
        LOG_WARN(MODULE, "the member has been permanently removed from the cluster");
        shutdown_daemon(d, 0);
        return;
    }
    d->serving = true;
    publish(d); /* then start_serving, as etcd serves once published */
}

/* Serve only once every committed entry is applied (restart replay). */
static void try_ready(struct daemon *d)
{
    int rv = consensus_barrier(d->node, on_ready_barrier, d);
    if (rv == LSKV_ENOTLEADER) {
        uv_timer_start(&d->retry, on_retry, 20, 0);
    } else if (rv != 0) {
        LOG_ERROR(MODULE, "consensus not ready: %s", lskv_strerror(rv));
        shutdown_daemon(d, 1);
    }
}

/* A committed entry that will not open or apply: this node must stop rather
 * than serve state that may differ from its peers'. */
static void on_consensus_fatal(void *arg, int code, const char *errmsg)
{
    struct daemon *d = arg;
    LOG_ERROR(MODULE, "%s: %s%s%s (%s)",
              d->serving ? "fatal: state machine stopped" : "refusing to start", errmsg,
              d->fsm.errmsg[0] ? ": " : "", d->fsm.errmsg, lskv_errname(code));
    shutdown_daemon(d, 1);
}

/* ledger_open verifies the whole ledger before anything is served. */
static void ledger_progress(void *arg, uint64_t done, uint64_t total, uint64_t entries)
{
    (void)arg;
    LOG_INFO(MODULE, "verifying the ledger: %" PRIu64 " of %" PRIu64 " MiB, %" PRIu64 " entries",
             done >> 20, total >> 20, entries);
}

/* Identity (service cert made at bootstrap, node key and cert endorsed by
 * it), ledger secret and the ledger itself. */
static int open_ledger(struct daemon *d, char *errmsg)
{
    struct config *c = &d->config;
    char path[4096];
    int rv;
    bool created = false;
    snprintf(path, sizeof path, "%s/identity", c->data_dir);
    if ((rv = make_dir(path, errmsg)) != 0)
        return rv;
    char cn[160];
    snprintf(cn, sizeof cn, "lskv service %016" PRIx64, d->cluster_id);
    if ((rv = cert_service_load_or_create(path, cn, d->dir.fresh, &d->service, &created,
                                          errmsg)) != 0)
        return rv;
    if (created)
        LOG_INFO(MODULE, "made a new service identity in %s/service.pem", path);
    snprintf(cn, sizeof cn, "lskv node %016" PRIx64, d->member_id);
    if ((rv = cert_node_load_or_create(path, d->service, cn, d->dir.fresh, &d->identity,
                                       &created, errmsg)) != 0)
        return rv;
    LOG_INFO(MODULE, "%s node identity %s", created ? "made a new" : "loaded",
             cert_node_id(d->identity));
    if ((rv = load_secret(d, "ledger.secret", d->ledger_secret, sizeof d->ledger_secret,
                          "ledger secret", errmsg)) != 0)
        return rv;
    snprintf(path, sizeof path, "%s/ledger", c->data_dir);
    struct ledger_config lc = {
        .dir = path,
        .secret = d->ledger_secret,
        .service = d->service,
        .chunk_bytes = (uint64_t)c->ledger_chunk_bytes,
        .sig_tx_interval = (uint64_t)c->sig_tx_interval,
        .sig_ms_interval = (uint64_t)c->sig_ms_interval,
        .progress = ledger_progress,
        .defer_open_chunk = true, /* ledger_begin_writes once the raft log checks out */
    };
    /* errmsg starts with the ledger file's path */
    return ledger_open(&lc, &d->ledger, errmsg);
}

/* Watch responses carry the header every etcd response carries. */
static void fill_watch_header(void *arg, Etcdserverpb__ResponseHeader *h)
{
    struct daemon *d = arg;
    api_fill_header(&d->api, h);
}

static size_t watch_total_queued(void *arg)
{
    struct daemon *d = arg;
    return d->server ? grpc_server_pending_out_bytes(d->server) : 0;
}

static void watch_corrupt(void *arg, const char *errmsg)
{
    struct daemon *d = arg;
    api_raise_corrupt(&d->api, errmsg);
}

static void notify_watchers(void *arg)
{
    struct daemon *d = arg;
    watch_hub_notify(d->watch);
    concurrency_service_applied(&d->api);
}

/* A member of a cluster fetches the entries a snapshot covers that its
 * ledger lacks (statemachine/catchup.h); a single member has lost them. */
static int check_snapshot_position(void *arg, const uint8_t *plain, size_t len, char *errmsg)
{
    struct daemon *d = arg;
    return fsm_check_snapshot_behind(d->ledger, plain, len, d->config.members.n > 1, errmsg);
}

/* consensus_config.serve_call: what other members ask this one. */
static int serve_call(void *arg, uint8_t kind, const uint8_t *req, size_t len, uint8_t **reply,
                      size_t *reply_len)
{
    struct daemon *d = arg;
    if (catchup_driver_owns(kind))
        return catchup_driver_serve(&d->fsm, kind, req, len, reply, reply_len);
    return api_serve_call(&d->api, kind, req, len, reply, reply_len);
}

/* Every sealed entry and the snapshot of the raft log check out (the
 * snapshot against the ledger too), and the log reaches the ledger's last
 * entry (else its tail was lost or cut). */
static int check_raft_dir(struct daemon *d, const struct consensus_config *cc, char *errmsg)
{
    struct raftdir_info info = {0};
    struct raftdir_snapshot_check snapshot_check = {.check = check_snapshot_position,
                                                    .arg = d};
    int rv = raftdir_verify(cc, &snapshot_check, &info, errmsg);
    d->raft_info = info;
    if (rv != 0 || info.empty)
        return rv;
    LOG_INFO(MODULE, "raft log: %" PRIu64 " command entries checked up to index %" PRIu64
             " (snapshot at %" PRIu64 ")", info.commands, info.last_index, info.snapshot_index);
    struct ledger_position pos;
    ledger_position(d->ledger, &pos);
    if (pos.index <= info.last_index)
        return 0;
    errmsg_printf(errmsg, "%s: the raft log ends at index %" PRIu64 " but the ledger (%s/ledger) "
                  "holds entries up to txid %" PRIu64 ".%" PRIu64 " (revision %" PRId64
                  "): the raft log lost its tail", cc->dir, info.last_index, d->config.data_dir,
                  pos.term, pos.index, pos.revision);
    return LSKV_ECORRUPT;
}

static void restore_progress(void *arg, uint64_t done, uint64_t total)
{
    struct daemon *d = arg;
    static uint64_t last_ms;
    uv_update_time(d->loop);
    if (done == total || uv_now(d->loop) - last_ms >= 1000) {
        last_ms = uv_now(d->loop);
        LOG_INFO(MODULE, "checking the backup to restore: %" PRIu64 " of %" PRIu64 " MiB",
                 done >> 20, total >> 20);
    }
}

/* A data dir made by `lskvctl snapshot restore`: its backup is checked in
 * full before anything else, on every start (a replay imports it again). */
static int open_restore(struct daemon *d, char *errmsg)
{
    char path[DATADIR_PATH_MAX + 32], text[DATADIR_IDS_TEXT_BYTES];
    int rv;
    if ((rv = datadir_path(&d->dir, RESTORE_BACKUP, path, sizeof path, errmsg)) != 0)
        return rv;
    if (access(path, F_OK) != 0)
        return 0;
    uint8_t key[BACKUP_KEY_BYTES], tag[DATADIR_TAG_BYTES];
    if ((rv = datadir_path(&d->dir, RESTORE_KEY, path, sizeof path, errmsg)) != 0 ||
        (rv = keyfile_load_or_create(path, key, sizeof key, false, NULL, errmsg)) != 0)
        return rv;
    FILE *f = NULL;
    if ((rv = datadir_path(&d->dir, RESTORE_IDS, path, sizeof path, errmsg)) == 0 &&
        ((f = fopen(path, "r")) == NULL || fread(text, 1, sizeof text, f) != sizeof text ||
         datadir_ids_parse(text, sizeof text, &d->restore_ids, tag) != 0)) {
        errmsg_printf(errmsg, "%s: missing or malformed", path);
        rv = LSKV_ECORRUPT;
    }
    if (f != NULL)
        fclose(f);
    if (rv == 0 && (rv = datadir_path(&d->dir, RESTORE_BACKUP, path, sizeof path, errmsg)) == 0)
        rv = restore_source_open(&d->restore, path, key, restore_progress, d, errmsg);
    explicit_bzero(key, sizeof key);
    if (rv != 0)
        return rv;
    d->has_restore = true;
    if ((rv = datadir_path(&d->dir, RESTORE_DONE, path, sizeof path, errmsg)) != 0)
        return rv;
    d->restore_pending = access(path, F_OK) != 0;
    LOG_INFO(MODULE, "restoring from a backup of cluster %016" PRIx64 " (member %016" PRIx64
             ") at revision %" PRId64 ", ledger size %" PRIu64 ": %" PRIu64 " records%s",
             d->restore.header.cluster_id, d->restore.header.member_id,
             d->restore.summary.revision, d->restore.ledger_size, d->restore.summary.records,
             d->restore_pending ? "" : " (applied already)");
    return 0;
}

/* The data dir, locked and checked, and what the disk's size decides. */
static int open_datadir(struct daemon *d, char *errmsg)
{
    struct config *c = &d->config;
    int rv;

    /* Nothing is made in a data dir that is not fresh (config/datadir.h). */
    if ((rv = datadir_open(&d->dir, c->data_dir, errmsg)) != 0 ||
        (rv = datadir_check_complete(&d->dir, errmsg)) != 0 ||
        (rv = open_restore(d, errmsg)) != 0)
        return rv;
    /* Raft segments and the free-space reserve follow the filesystem's size
     * (storage/diskspace.h): a 64 MiB filesystem must hold a few segments. */
    uint64_t avail = 0, total = 0;
    uint64_t segment = 64u << 20, snap_bytes = 64u << 20;
    if (diskspace_stat(c->data_dir, &avail, &total)) {
        segment = diskspace_segment_bytes(avail, total);
        snap_bytes = diskspace_snapshot_bytes(total);
    }
    /* The log kept before a snapshot holds at most snap_bytes too. */
    uint64_t trailing = snap_bytes / (uint64_t)c->max_request_bytes;
    trailing = trailing < 2 ? 2 : trailing > 1000 ? 1000 : trailing;
    diskspace_init(&d->space, c->data_dir, c->quota_backend_bytes, segment,
                   (uint64_t)c->max_request_bytes, snap_bytes);
    LOG_INFO(MODULE, "disk: %" PRIu64 " of %" PRIu64 " MiB free; raft segments of %" PRIu64
             " MiB, a snapshot every %" PRIu64 " MiB of log keeping %" PRIu64 " entries; "
             "writes that add data stop below %" PRIu64 " MiB free, all writes below %" PRIu64
             " MiB; quota %" PRId64 " bytes", avail >> 20, total >> 20, segment >> 20,
             snap_bytes >> 20, trailing, d->space.reserve >> 20, d->space.floor >> 20,
             d->space.quota);
    uint64_t freed = diskspace_start(&d->space);
    if (freed != 0)
        LOG_WARN(MODULE, "no space left on device: %" PRIu64 " MiB free on the filesystem of %s; "
                 "deleted %s/" DISKSPACE_FILE " (%" PRIu64 " MiB) so that this start fits",
                 avail >> 20, c->data_dir, c->data_dir, freed >> 20);
    d->segment_bytes = segment;
    d->snapshot_bytes = snap_bytes;
    d->snapshot_trailing = trailing;
    return 0;
}

/* The members' peer addresses as raft and the peer network use them
 * (numeric: raft's configuration keeps them). */
struct member_addresses {
    char address[MEMBERS_MAX][80];
    struct member_net_peer peers[MEMBERS_MAX];
    struct consensus_member voters[MEMBERS_MAX];
};

static int resolve_members(const struct members *m, struct member_addresses *out, char *errmsg)
{
    for (size_t i = 0; i < m->n; i++) {
        struct url u;
        int rv = url_parse(m->m[i].peer_urls[0], 0, &u, errmsg);
        if (rv == 0)
            rv = url_resolve(&u, NULL, out->address[i], sizeof out->address[i], errmsg);
        if (rv != 0)
            return rv;
        out->peers[i] = (struct member_net_peer){
            .id = m->m[i].id, .name = m->m[i].name, .address = out->address[i]};
        out->voters[i] = (struct consensus_member){.id = m->m[i].id,
                                                   .address = out->address[i]};
    }
    return 0;
}

/* Listens on the peer port with identity. */
static int open_member_net(struct daemon *d, const struct peer_tls_identity *identity,
                           char *errmsg)
{
    struct config *c = &d->config;
    struct member_addresses a;
    struct url listen;
    char listen_address[80], more[PEER_MAX_MORE_LISTEN][80];
    const char *more_ptrs[PEER_MAX_MORE_LISTEN];
    size_t n_more = c->n_listen_peer_urls - 1;
    int rv;
    if (n_more > PEER_MAX_MORE_LISTEN) {
        errmsg_printf(errmsg, "--listen-peer-urls: at most %d URLs", PEER_MAX_MORE_LISTEN + 1);
        return LSKV_EINVAL;
    }
    if ((rv = resolve_members(&c->members, &a, errmsg)) != 0 ||
        (rv = url_parse(c->listen_peer_urls[0], 0, &listen, errmsg)) != 0 ||
        (rv = url_resolve(&listen, NULL, listen_address, sizeof listen_address, errmsg)) != 0)
        return rv;
    /* etcd listens on every one of them */
    for (size_t i = 0; i < n_more; i++) {
        if ((rv = url_parse(c->listen_peer_urls[i + 1], 0, &listen, errmsg)) != 0 ||
            (rv = url_resolve(&listen, NULL, more[i], sizeof more[i], errmsg)) != 0)
            return rv;
        more_ptrs[i] = more[i];
    }
    /* etcd's peer TLS files: the handshake's certificates (net/peer.h). */
    uint8_t *pem[3] = {NULL, NULL, NULL};
    const char *files[3] = {c->peer_cert_file, c->peer_key_file, c->peer_trusted_ca_file};
    size_t len;
    for (int i = 0; i < 3 && rv == 0; i++)
        if (files[i] != NULL)
            rv = file_read_all(files[i], &pem[i], &len, errmsg);
    if (rv != 0) {
        for (int i = 0; i < 3; i++)
            free(pem[i]);
        return rv;
    }
    struct member_net_config mc = {
        .member_id = c->members.m[c->members.self].id,
        .cluster_id = c->members.cluster_id,
        .name = c->name,
        .listen_address = listen_address,
        .more_listen = more_ptrs,
        .n_more_listen = n_more,
        .members = a.peers,
        .n_members = c->members.n,
        .policy = &d->policy,
        .election_ms = (unsigned)c->election_timeout_ms,
        .operator_tls = {.cert_pem = (const char *)pem[0], .key_pem = (const char *)pem[1],
                         .ca_pem = (const char *)pem[2],
                         .client_cert_auth = c->peer_client_cert_auth,
                         .allowed_cn = c->peer_cert_allowed_cn,
                         .allowed_hostname = c->peer_cert_allowed_hostname},
    };
    rv = member_net_open(d->loop, &mc, identity, &d->net, errmsg);
    if (rv == 0) {
        member_net_set_member_check(d->net, lists_member, d);
        member_net_set_probe_reply_cb(d->net, on_probe_reply, d);
    }
    if (pem[1] != NULL)
        explicit_bzero(pem[1], strlen((const char *)pem[1]));
    for (int i = 0; i < 3; i++)
        free(pem[i]);
    return rv;
}

static void continue_start(struct daemon *d);

/* An existing cluster's joiner takes the ids the cluster gave (which the
 * data dir's ids file then records) and reaches the members it listed. */
static int adopt_joined(struct daemon *d, const struct member_net_joined *j, char *errmsg)
{
    int rv = members_reassign(&d->config.members, j->member_id, j->cluster_id, errmsg);
    if (rv != 0)
        return rv;
    struct member_net_peer peers[JOIN_MEMBERS_MAX];
    char addr[JOIN_MEMBERS_MAX][80];
    for (size_t i = 0; i < j->n_members && i < JOIN_MEMBERS_MAX; i++) {
        struct url u;
        if ((rv = url_parse(j->member_peer_urls[i], 0, &u, errmsg)) != 0 ||
            (rv = url_resolve(&u, NULL, addr[i], sizeof addr[i], errmsg)) != 0)
            return rv;
        peers[i] = (struct member_net_peer){.id = j->member_ids[i], .name = "",
                                            .address = addr[i]};
    }
    return member_net_set_members(d->net, peers, j->n_members);
}

/* --initial-cluster-state existing: a member MemberAdd added. */
static bool joins_existing(const struct config *c)
{
    return strcmp(c->initial_cluster_state, "existing") == 0;
}

static void on_joined(void *arg, int status, const struct member_net_joined *joined,
                      const char *errmsg)
{
    struct daemon *d = arg;
    char why[LSKV_ERRMSG_SIZE] = "";
    join_key_wipe(&d->join_key);
    if (d->stopping)
        return;
    if (status == 0 && joins_existing(&d->config))
        status = adopt_joined(d, joined, why);
    if (status != 0) {
        LOG_ERROR(MODULE, "refusing to start: joining the cluster: %s (%s)",
                  why[0] ? why : errmsg, lskv_errname(status));
        shutdown_daemon(d, 1);
        return;
    }
    continue_start(d);
}

/* A member of a new multi-member cluster other than its founder starts with
 * a fresh node key and asks the founder for the cluster's secrets
 * (net/member_net.h); every other start goes on at once. Returns 1 while
 * joining (on_joined continues), 0 to go on, or an error. */
static int maybe_join(struct daemon *d, char *errmsg)
{
    struct config *c = &d->config;
    const struct members *m = &c->members;
    int rv = c->attestation_policy != NULL
                 ? attest_policy_load(c->attestation_policy, &d->policy, errmsg)
                 : attest_policy_default(&d->policy, errmsg);
    if (rv != 0)
        return rv;
    uint64_t founder = m->m[0].id; /* members are sorted by id (config/members.h) */
    bool existing = joins_existing(c);
    if (!d->dir.fresh || m->n == 1 || (!existing && m->m[m->self].id == founder))
        return 0;
    if ((rv = join_key_new(m->m[m->self].id, &d->join_key, errmsg)) != 0)
        return rv;
    struct peer_tls_identity id = {.cert_pem = d->join_key.cert_pem,
                                   .key_pem = d->join_key.key_pem};
    const struct member *self = &m->m[m->self];
    if ((rv = open_member_net(d, &id, errmsg)) != 0 ||
        (rv = member_net_join(d->net, &d->join_key, &d->dir,
                              existing ? self->peer_urls : NULL, self->n_peer_urls, on_joined,
                              d, errmsg)) != 0)
        return rv;
    if (existing)
        LOG_INFO(MODULE, "joining an existing cluster as the member added with peer URLs %s%s",
                 self->peer_urls[0], self->n_peer_urls > 1 ? ",..." : "");
    else
        LOG_INFO(MODULE, "joining cluster %016" PRIx64 " through its founder, member %016"
                 PRIx64, m->cluster_id, founder);
    return 1;
}

static void on_consensus_released(void *arg);

/* raft's configuration for this member. */
static void consensus_config_of(struct daemon *d, const char *raft_dir,
                                struct consensus_config *cc)
{
    struct config *c = &d->config;
    *cc = (struct consensus_config){
        .dir = raft_dir,
        .data_key = d->data_key,
        .cluster_id = d->cluster_id,
        .key_epoch_size = (uint64_t)c->key_epoch_size,
        .member_id = d->member_id,
        .heartbeat_ms = (unsigned)c->heartbeat_interval_ms,
        .election_ms = (unsigned)c->election_timeout_ms,
        .peer_address = d->addrs->address[c->members.self],
        .members = d->addrs->voters,
        .n_members = c->members.n,
        .joins_existing = joins_existing(c),
        .transport = member_net_transport(d->net),
        .send = member_net_send,
        .send_arg = d->net,
        .serve_call = serve_call, /* leases: refused until the api is set up */
        .serve_arg = d,
        .released_cb = on_consensus_released,
        .released_arg = d,
        .snapshot_threshold = (unsigned)c->snapshot_count,
        .segment_bytes = (size_t)d->segment_bytes,
        .snapshot_bytes = d->snapshot_bytes,
        .snapshot_trailing = (unsigned)d->snapshot_trailing,
        .max_inflight_bytes = (uint64_t)c->max_buffered_request_bytes,
        .fatal_cb = on_consensus_fatal,
        .fatal_arg = d,
        .append_observer = on_append,
        .append_observer_arg = d,
    };
}

/* Admits an existing cluster's joiner (identity/join.h): the committed
 * membership holds a member with exactly its peer URLs that has not
 * started (published a name) yet. A started member's place is not taken by
 * a fresh data dir: that would be a rolled-back member (issue 10 point 7). */
static int admit_existing(void *arg, char *const *peer_urls, size_t n, const char *name,
                          struct join_admitted *out, char *errmsg)
{
    (void)name; /* published once it starts, as etcd's */
    struct daemon *d = arg;
    const struct member_table *mt = &d->fsm.members;
    /* The leader's committed membership is the newest: a lagging or
     * restarting member could admit from an old one. */
    struct consensus_status st = {0};
    if (d->serving && d->node != NULL)
        consensus_get_status(d->node, &st);
    if (!st.is_leader) {
        errmsg_printf(errmsg, "member %016" PRIx64 " does not lead: ask the leader",
                      d->member_id);
        return LSKV_ENOTLEADER;
    }
    const Etcdserverpb__Member *m =
        member_table_initialized(mt) ? member_table_find_url(mt, peer_urls[0]) : NULL;
    bool same = m != NULL && m->n_peerurls == n;
    for (size_t i = 0; same && i < n; i++)
        same = member_table_find_url(mt, peer_urls[i]) == m;
    if (!same) {
        errmsg_printf(errmsg, "member %016" PRIx64 " lists no member with peer URLs %s%s: "
                      "add it first (etcdctl member add)", d->member_id, peer_urls[0],
                      n > 1 ? ",..." : "");
        return LSKV_EMEMBERNOTFOUND;
    }
    if (m->name != NULL && m->name[0] != '\0') {
        errmsg_printf(errmsg, "member %016" PRIx64 " (%s) has started before: a fresh data dir "
                      "cannot take its place; remove it and add it again", m->id, m->name);
        return -EEXIST;
    }
    out->member_id = m->id;
    const Etcdserverpb__Member *list[MEMBER_TABLE_MAX];
    size_t k = member_table_sorted(mt, list);
    for (size_t i = 0; i < k && out->n_members < JOIN_MEMBERS_MAX; i++)
        if (list[i]->n_peerurls > 0) {
            out->ids[out->n_members] = list[i]->id;
            out->peer_urls[out->n_members++] = list[i]->peerurls[0];
        }
    return 0;
}

/* Secrets, ledger and peer port, and the raft log checked: nothing in the
 * data dir has been opened for writing yet. */
static int open_daemon(struct daemon *d, char *errmsg)
{
    struct config *c = &d->config;
    int rv;

    if ((rv = load_secret(d, "data.key", d->data_key, sizeof d->data_key, "data key",
                          errmsg)) != 0)
        return rv;
    if ((rv = load_ids(d, errmsg)) != 0)
        return rv;
    if ((rv = open_ledger(d, errmsg)) != 0)
        return rv;
    if (d->net == NULL) { /* not a joiner: show the node certificate from the start */
        char *key_pem = NULL;
        size_t key_len = 0;
        if ((rv = cert_node_key_pem(d->identity, &key_pem, &key_len)) != 0) {
            errmsg_printf(errmsg, "node key: %s", lskv_strerror(rv));
            return rv;
        }
        struct peer_tls_identity id = {.cert_pem = cert_node_pem(d->identity),
                                       .key_pem = key_pem,
                                       .service_cert_pem = cert_service_pem(d->service)};
        rv = open_member_net(d, &id, errmsg);
        cert_secret_free(key_pem);
        if (rv != 0)
            return rv;
    }
    /* Any member holding the secrets admits the configured members, and
     * members MemberAdd added. */
    if ((rv = member_net_serve_joins(d->net, d->service, d->data_key, d->ledger_secret,
                                     cert_node_pem(d->identity), admit_existing, d,
                                     errmsg)) != 0)
        return rv;
    if ((d->addrs = malloc(sizeof *d->addrs)) == NULL)
        return LSKV_ENOMEM;
    if ((rv = resolve_members(&c->members, d->addrs, errmsg)) != 0)
        return rv;

    char raft_dir[4096];
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", c->data_dir);
    struct consensus_config cc;
    consensus_config_of(d, raft_dir, &cc);
    /* The raft log is checked whole before the engine is opened or libraft
     * may change a file (consensus/raftdir.h). */
    return check_raft_dir(d, &cc, errmsg);
}

/* Then the stores, the state machine and raft. */
static int open_consensus(struct daemon *d, char *errmsg)
{
    struct config *c = &d->config;
    char path[4096];
    int rv;
    char raft_dir[4096];
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", c->data_dir);
    struct consensus_config cc;
    consensus_config_of(d, raft_dir, &cc);
    if ((rv = ledger_begin_writes(d->ledger, errmsg)) != 0)
        return rv;

    snprintf(path, sizeof path, "%s/engine", c->data_dir);
    struct recstore_config rc = {
        .path = path,
        .data_key = d->data_key,
        .cluster_id = d->cluster_id,
        .key_epoch_size = (uint64_t)c->key_epoch_size,
        .cache_bytes = (size_t)c->cache_size_bytes,
    };
    if ((rv = recstore_open(&rc, &d->records, errmsg)) != 0)
        return rv;
    if ((rv = kvstore_open(d->records, &d->kv)) != 0) {
        errmsg_printf(errmsg, "key index: %s", lskv_strerror(rv));
        return rv;
    }
    /* etcd's TTL floor: ceil(1.5 x the election timeout) seconds. */
    if ((rv = lessor_new((3 * c->election_timeout_ms / 2 + 999) / 1000, &d->leases)) != 0) {
        errmsg_printf(errmsg, "lease table: %s", lskv_strerror(rv));
        return rv;
    }
    fsm_init(&d->fsm, d->kv, d->records, d->cluster_id, d->member_id);
    fsm_set_ledger(&d->fsm, d->ledger);
    fsm_set_leases(&d->fsm, d->leases);
    fsm_allow_catchup(&d->fsm, c->members.n > 1);
    struct watch_hub_config wc = {.kv = d->kv, .fill_header = fill_watch_header,
                                  .on_corrupt = watch_corrupt, .arg = d,
                                  /* one budget for what clients send and
                                   * what they are slow to read */
                                  .total_queued = watch_total_queued,
                                  .max_total_queued_bytes =
                                      (size_t)c->max_buffered_request_bytes,
                                  /* etcd's watch server: the request limit
                                   * plus its gRPC overhead allowance */
                                  .fragment_bytes = (size_t)c->max_request_bytes + 512 * 1024};
    if ((rv = watch_hub_new(&wc, &d->watch)) != 0) {
        errmsg_printf(errmsg, "watch hub: %s", lskv_strerror(rv));
        return rv;
    }
    fsm_set_observer(&d->fsm, notify_watchers, d);
    fsm_set_space(&d->fsm, &d->space);
    if (d->has_restore)
        fsm_set_restore(&d->fsm, &d->restore);
    struct consensus_fsm vt = fsm_vtable(&d->fsm);
    /* etcd's buckets: prometheus.ExponentialBuckets(0.001, 2, 14) */
    metrics_histogram_init(&d->wal_fsync, 0.001, 2, 14);
    metrics_histogram_init(&d->backend_commit, 0.001, 2, 14);
    d->fsm_flush = vt.flush;
    vt.flush = timed_flush;
    d->consensus_opened = true; /* the net closes after the node (or its release) */
    rv = consensus_open(d->loop, &cc, &vt, &d->node, errmsg);
    free(d->addrs);
    d->addrs = NULL;
    if (rv != 0) {
        if (d->fsm.errmsg[0])
            errmsg_wrapf(errmsg, "%s", d->fsm.errmsg);
        return rv;
    }
    member_net_set_node(d->net, d->node);
    (void)sync_member_net(d); /* else the configured members until the timer */
    uv_timer_start(&d->member_timer, on_member_timer, 200, 200);
    if (c->members.n > 1) {
        uint64_t ids[CATCHUP_DRIVER_MAX_MEMBERS];
        size_t n = 0;
        for (size_t i = 0; i < c->members.n && n < CATCHUP_DRIVER_MAX_MEMBERS; i++)
            ids[n++] = c->members.m[i].id;
        if ((rv = catchup_driver_start(d->loop, d->node, &d->fsm, ids, n, on_consensus_fatal, d,
                                       &d->catchup)) != 0) {
            errmsg_printf(errmsg, "catch-up driver: %s", lskv_strerror(rv));
            return rv;
        }
    }
    struct ledger_position pos;
    ledger_position(d->ledger, &pos);
    LOG_INFO(MODULE, "ledger: %" PRIu64 " entries (last %" PRIu64 ".%" PRIu64 ", revision %" PRId64
             "), %" PRIu64 " signed; %" PRIu64 " replayed entries checked",
             pos.size, pos.term, pos.index, pos.revision, pos.signed_size, d->fsm.replayed);
    return 0;
}

/* After the data dir (and a join): the member opens and, once every
 * committed entry is applied, serves. */
static void on_probed(void *arg, int status, const char *why)
{
    struct daemon *d = arg;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    if (d->stopping)
        return;
    if (status == -EEXIST) {
        LOG_ERROR(MODULE, "refusing to start: data dir %s: %s", d->config.data_dir, why);
        shutdown_daemon(d, 1);
        return;
    }
    if (status == LSKV_EREMOVED) { /* etcd's words and exit */
        LOG_WARN(MODULE, "the member has been permanently removed from the cluster (%s)", why);
        shutdown_daemon(d, 0);
        return;
    }
    if (status != 0) {
        LOG_ERROR(MODULE, "refusing to start: data dir %s was rolled back (restored from an older "
                  "copy, or writes were lost): %s; it must not vote or serve: remove this member "
                  "and add it again with a fresh data dir", d->config.data_dir, why);
        shutdown_daemon(d, 1);
        return;
    }
    if (open_consensus(d, errmsg) != 0) {
        LOG_ERROR(MODULE, "refusing to start: %s", errmsg);
        shutdown_daemon(d, 1);
        return;
    }
    LOG_INFO(MODULE, "member %016" PRIx64 " of cluster %016" PRIx64 ", data in %s", d->member_id,
             d->cluster_id, d->config.data_dir);
    try_ready(d);
}

static void continue_start(struct daemon *d)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    if (open_daemon(d, errmsg) != 0) {
        LOG_ERROR(MODULE, "refusing to start: %s", errmsg);
        shutdown_daemon(d, 1);
        return;
    }
    /* A member of a larger cluster asks the others what they know of it
     * before raft may vote or serve (consensus/probe.h); a data dir made by
     * this run holds nothing to roll back. */
    if (d->config.members.n > 1 && !(d->dir.fresh && d->raft_info.empty)) {
        struct probe_self self = {.last_index = d->raft_info.last_index,
                                  .term = d->raft_info.term};
        int rv = member_net_probe(d->net, &self, on_probed, d);
        if (rv != 0) {
            LOG_ERROR(MODULE, "refusing to start: rollback probe: %s", lskv_strerror(rv));
            shutdown_daemon(d, 1);
        }
        return;
    }
    on_probed(d, 0, "");
}

static void close_daemon(struct daemon *d)
{
    if (d->kv != NULL)
        kvstore_close(d->kv);
    lessor_free(d->leases);
    watch_hub_free(d->watch);
    if (d->records != NULL) {
        uint32_t epoch;
        uint64_t seals;
        recstore_key_stats(d->records, &epoch, &seals);
        LOG_INFO(MODULE, "record keys: last epoch %" PRIu32 ", %" PRIu64 " seals under it",
                 epoch, seals);
        metrics_set_untrusted(NULL, NULL);
        recstore_close(d->records);
    }
    ledger_close(d->ledger);
    join_key_wipe(&d->join_key);
    auth_tokens_free(d->api.tokens);
    free(d->addrs);
    jwt_key_free(d->api.jwt);
    fsm_close(&d->fsm);
    cert_node_free(d->identity);
    cert_service_free(d->service);
    config_free(&d->config);
    memset(d->data_key, 0, sizeof d->data_key);
    memset(d->ledger_secret, 0, sizeof d->ledger_secret);
    restore_source_close(&d->restore);
    datadir_close(&d->dir); /* last: the data dir is ours until everything is closed */
}

int main(int argc, char **argv)
{
    static struct daemon d;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    bool exit_now = false;

    signal(SIGPIPE, SIG_IGN);
    if (config_parse(&d.config, argc, argv, stdout, &exit_now, errmsg) != 0) {
        fprintf(stderr, "lskvd: %s\n", errmsg);
        config_free(&d.config);
        return 2;
    }
    if (exit_now) {
        config_free(&d.config);
        return 0;
    }
    if (config_open_log_output(&d.config, errmsg) != 0) {
        fprintf(stderr, "lskvd: %s\n", errmsg);
        config_free(&d.config);
        return 2;
    }
    log_level_parse(d.config.log_level, &log_min_level);
    config_dump(&d.config, log_config_line);

    d.loop = uv_default_loop();
    uv_signal_init(d.loop, &d.sigint);
    uv_signal_init(d.loop, &d.sigterm);
    uv_timer_init(d.loop, &d.retry);
    uv_timer_init(d.loop, &d.publish_retry);
    d.publish_retry.data = &d;
    uv_timer_init(d.loop, &d.member_timer);
    d.member_timer.data = &d;
    uv_timer_init(d.loop, &d.space_timer);
    d.space_timer.data = &d;
    uv_check_init(d.loop, &d.sig_check);
    uv_timer_init(d.loop, &d.sig_timer);
    d.sigint.data = d.sigterm.data = d.retry.data = &d;
    d.sig_check.data = d.sig_timer.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);

    int rv = open_datadir(&d, errmsg);
    if (rv == 0)
        rv = maybe_join(&d, errmsg);
    if (rv < 0) {
        LOG_ERROR(MODULE, "refusing to start: %s", errmsg);
        shutdown_daemon(&d, 1);
    } else if (rv == 0) {
        continue_start(&d);
    }
    uv_run(d.loop, UV_RUN_DEFAULT);
    close_daemon(&d);
    rv = uv_loop_close(d.loop);
    if (rv != 0)
        LOG_WARN(MODULE, "event loop closed with open handles: %s", uv_strerror(rv));
    return d.exit_code;
}
