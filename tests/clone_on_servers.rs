//! Cloning on real servers: a new instance that cannot replicate because the primary
//! purged the transactions it needs is filled from a caught-up replica chosen by korc,
//! while the application writes on, then attached with GTID auto-positioning. MySQL
//! copies with its clone plugin; MariaDB through korc's agents (`korc agent serve`,
//! `korc agent restore`) with mariadb-backup, over TLS, and a copy interrupted by a
//! killed agent or donor starts again from scratch.

mod support;

use korc::agent::protocol::CloneRequest;
use korc::topology::clone::{
    choose_donor, clone_mariadb, clone_mysql, mysql_clone_progress, set_replica_position, uptime,
};
use korc::topology::dialect::ReplicationCredentials;
use korc::topology::instance::InstanceKey;
use korc::topology::policy::Policy;
use korc::topology::probe::{now_ms, probe_cluster};
use korc::topology::recovery::point_to;
use korc::topology::session::{Connector, Credentials};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{ADMIN, Agent, Flavor, REPL, Sandbox, restore, wait_until};

fn row_count(server: &support::Server) -> usize {
    server.sql("SELECT COUNT(*) FROM test.t").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_a_new_instance_whose_transactions_were_purged_is_cloned_from_a_replica() {
    let mut sb = Sandbox::replication(Flavor::Mysql, 3);
    let values: Vec<String> = (0..500).map(|i| format!("('before-{i}')")).collect();
    sb.servers[0]
        .app_sql(&format!("INSERT INTO t (v) VALUES {}", values.join(",")))
        .unwrap();
    for i in 1..3 {
        sb.servers[i].wait_caught_up(&sb.servers[0]);
    }
    // The primary forgets every transaction so far.
    sb.servers[0].sql("FLUSH BINARY LOGS");
    sb.servers[0].sql("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY");
    assert_ne!(sb.servers[0].variable("gtid_purged"), "");

    // A new instance cannot replicate: what it needs is purged.
    let new = sb.add_empty();
    sb.servers[new].replicate_from(&sb.servers[0]);
    wait_until(20, "the new instance refused by the primary", || {
        sb.servers[new].replica_status().contains("purged")
    });

    let connector = Connector::new(Credentials {
        user: ADMIN.0.into(),
        password: ADMIN.1.into(),
    });
    let keys: Vec<InstanceKey> = sb
        .servers
        .iter()
        .map(|s| s.key().parse().unwrap())
        .collect();
    let key = |i: usize| keys[i].clone();
    let instances = probe_cluster(&connector, &keys, &[]).await;
    let choice =
        choose_donor(&instances, &key(0), &key(new), &Policy::default(), now_ms()).unwrap();
    assert!(!choice.primary, "a replica can serve: {choice:?}");
    assert!(choice.donor == key(1) || choice.donor == key(2));

    // The application writes through the primary during the copy.
    let writing = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let primary_ip = sb.servers[0].ip;
    let writer = {
        let (writing, acknowledged) = (writing.clone(), acknowledged.clone());
        let app = sb.servers[0]
            .app_command("SELECT 1")
            .get_program()
            .to_owned();
        std::thread::spawn(move || {
            let mut i = 0;
            while writing.load(Ordering::SeqCst) {
                let ok = std::process::Command::new(&app)
                    .args(["--no-defaults", "-h", &primary_ip.to_string(), "-P", "3306"])
                    .args(["-u", support::APP.0, &format!("-p{}", support::APP.1)])
                    .args([
                        "test",
                        "-e",
                        &format!("INSERT INTO t (v) VALUES ('during-{i}')"),
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
        })
    };
    let repl = ReplicationCredentials {
        user: REPL.0.into(),
        password: REPL.1.into(),
        source_ca: None,
    };
    let started = Instant::now();
    let copy = {
        let (connector, to, from, repl) = (
            connector.clone(),
            key(new),
            choice.donor.clone(),
            repl.clone(),
        );
        tokio::spawn(async move {
            clone_mysql(&connector, &to, &from, &repl, 0, Duration::from_secs(120)).await
        })
    };
    // korc's account follows the copy on the recipient, and reads nothing else.
    let mut reports = Vec::new();
    while !copy.is_finished() {
        if let Ok(Some(p)) = mysql_clone_progress(&connector, &key(new)).await {
            reports.push(p);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    copy.await.unwrap().unwrap();
    let copied = started.elapsed();
    assert!(
        reports
            .iter()
            .any(|p| p.state == "In Progress" && p.error.is_none()),
        "{reports:?}"
    );
    let ended = Instant::now();
    sb.servers[new].wait_exited(60);
    sb.servers[new].start();
    // The bytes a small copy moved may show only between two reads; the server keeps
    // the last copy's report across its restart.
    let last = mysql_clone_progress(&connector, &key(new))
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        reports.iter().any(|p| p.bytes_copied > 0)
            || (last.state == "Completed" && last.bytes_copied > 0),
        "{reports:?} then {last:?}"
    );
    // What korc tells a server restarted on its copy by (whole seconds, rounded down).
    assert!(uptime(&connector, &key(new)).await.unwrap() <= ended.elapsed());
    point_to(&connector, &key(new), &key(0), Some(&repl), true)
        .await
        .unwrap();
    println!("cloned from {} in {copied:?}", choice.donor);
    writing.store(false, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(acknowledged.load(Ordering::SeqCst) > 0, "the writer wrote");

    // Attached and caught up, with every row: those before the purge and those
    // written during the copy.
    sb.servers[new].wait_caught_up(&sb.servers[0]);
    assert_eq!(sb.servers[new].io_running(), "Yes");
    let expected = 500 + acknowledged.load(Ordering::SeqCst);
    assert_eq!(row_count(&sb.servers[0]), expected);
    assert_eq!(row_count(&sb.servers[new]), expected);
    // It kept its own identity and is read-only.
    assert_ne!(
        sb.servers[new].variable("server_uuid"),
        sb.servers[0].variable("server_uuid")
    );
    assert_eq!(sb.servers[new].variable("super_read_only"), "1");
}

/// A MariaDB cluster of three with TLS, `rows` rows of 200 bytes in `test.t`, its
/// binary logs purged, and a new, empty instance refused by the primary for it.
/// Returns the sandbox, the new instance's index and korc's connector.
fn mariadb_with_purged_logs(rows: usize) -> (Sandbox, usize, Connector) {
    let mut sb = Sandbox::replication_with_tls(Flavor::MariaDb, 3);
    for batch in 0..rows.div_ceil(500) {
        let values: Vec<String> = (0..500.min(rows - batch * 500))
            .map(|i| format!("('before-{batch}-{i}-{}')", "x".repeat(40)))
            .collect();
        sb.servers[0].sql(&format!(
            "INSERT INTO test.t (v) VALUES {}",
            values.join(",")
        ));
    }
    for i in 1..3 {
        sb.servers[i].wait_caught_up(&sb.servers[0]);
    }
    sb.servers[0].sql("FLUSH BINARY LOGS");
    // MariaDB keeps a log a replica's dump thread still reads: purge until only the
    // new one is left.
    wait_until(20, "every binary log with the rows purged", || {
        sb.servers[0].sql("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY");
        sb.servers[0].sql("SHOW BINARY LOGS").lines().count() == 1
    });
    let new = sb.add_empty();
    sb.servers[new].replicate_from(&sb.servers[0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sb.servers[new].replica_status().contains("1236") {
        assert!(
            Instant::now() < deadline,
            "the new instance not refused by the primary: {}",
            sb.servers[new].replica_status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let connector = tls_connector(&sb);
    (sb, new, connector)
}

/// korc's connections to a sandbox with TLS, as korc's administrative account.
fn tls_connector(sb: &Sandbox) -> Connector {
    let mut connector = Connector::new(Credentials {
        user: ADMIN.0.into(),
        password: ADMIN.1.into(),
    });
    connector.tls = sb.certificates.as_ref().unwrap().connector_tls();
    connector
}

/// What korc does once a server restarted on a MariaDB copy: sets its replica
/// position to the copy's `gtid`, then attaches it to `primary` as the bootstrap plan
/// attaches an instance without replication.
async fn attach_copy(
    connector: &Connector,
    replica: &InstanceKey,
    primary: &InstanceKey,
    gtid: &str,
) {
    set_replica_position(connector, replica, gtid)
        .await
        .unwrap();
    let repl = ReplicationCredentials {
        user: REPL.0.into(),
        password: REPL.1.into(),
        source_ca: Some(korc::topology::dialect::SourceCa::ServerCa),
    };
    point_to(connector, replica, primary, Some(&repl), true)
        .await
        .unwrap();
}

fn agent_client(sb: &Sandbox) -> korc::agent::client::AgentClient {
    let certs = sb.certificates.as_ref().unwrap();
    korc::agent::client::AgentClient::new(
        REPL.0,
        REPL.1,
        Some(korc::agent::ClientTls {
            ca: certs.authority.cert.clone().into_bytes(),
            server_name: support::TLS_SERVER_NAME.into(),
        }),
    )
}

/// An application writing rows through `server` until stopped; counts the
/// acknowledged ones.
struct Writer {
    writing: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(server: &support::Server) -> Self {
        let writing = Arc::new(AtomicBool::new(true));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let (w, a) = (writing.clone(), acknowledged.clone());
        let command = server.app_command("SELECT 1");
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while w.load(Ordering::SeqCst) {
                // The same client and account, another statement.
                let mut args = args.clone();
                *args.last_mut().unwrap() =
                    format!("INSERT INTO t (v) VALUES ('during-{i}')").into();
                let ok = std::process::Command::new(&program)
                    .args(&args)
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
        });
        Self {
            writing,
            acknowledged,
            thread,
        }
    }

    fn stop(self) -> usize {
        self.writing.store(false, Ordering::SeqCst);
        self.thread.join().unwrap();
        self.acknowledged.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_a_new_instance_whose_transactions_were_purged_is_copied_by_korcs_agents() {
    let rows = 20_000;
    let (mut sb, new, connector) = mariadb_with_purged_logs(rows);
    let keys: Vec<InstanceKey> = sb
        .servers
        .iter()
        .map(|s| s.key().parse().unwrap())
        .collect();
    let instances = probe_cluster(&connector, &keys, &[]).await;
    let choice = choose_donor(
        &instances,
        &keys[0],
        &keys[new],
        &Policy::default(),
        now_ms(),
    )
    .unwrap();
    assert!(!choice.primary, "a replica can serve: {choice:?}");
    let donor = sb.by_key(&choice.donor.to_string()).server_id as usize - 1;
    let certs = sb.certificates.as_ref().unwrap();
    let donor_agent = Agent::start(&sb.servers[donor], Some(certs));
    let recipient_agent = Agent::start(&sb.servers[new], Some(certs));

    let writer = Writer::start(&sb.servers[0]);
    let client = agent_client(&sb);
    let progress = Arc::new(std::sync::Mutex::new(None));
    let started = Instant::now();
    let copy = {
        let (client, to, from, progress) = (
            client.clone(),
            recipient_agent.address.clone(),
            donor_agent.address.clone(),
            progress.clone(),
        );
        tokio::spawn(async move {
            let request = CloneRequest {
                donor: from,
                max_mib_per_second: 0,
                save: None,
            };
            clone_mariadb(&client, &to, &request, &progress, Duration::from_secs(120)).await
        })
    };
    let mut reports = Vec::new();
    while !copy.is_finished() {
        if let Some(p) = progress.lock().unwrap().clone() {
            reports.push(p);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gtid = copy.await.unwrap().unwrap();
    let staged_after = started.elapsed();
    let last = reports.last().cloned().unwrap();
    assert!(
        last.bytes_copied > 0 && last.bytes_estimated > 0,
        "{reports:?}"
    );
    println!(
        "staged {:.1} MiB from {} in {staged_after:?} ({:.1} MiB/s), at {gtid}",
        last.bytes_copied as f64 / 1048576.0,
        choice.donor,
        last.bytes_copied as f64 / 1048576.0 / staged_after.as_secs_f64()
    );
    // The donor stayed a replica serving reads.
    assert_eq!(sb.servers[donor].io_running(), "Yes");
    assert!(
        sb.servers[donor]
            .sql("SELECT COUNT(*) FROM test.t")
            .parse::<usize>()
            .unwrap()
            >= rows
    );
    // Staged beside the running server, which still runs on its own data.
    assert_eq!(
        korc::agent::restore::staged(&sb.servers[new].datadir()).unwrap(),
        korc::agent::restore::Staged::Prepared
    );
    assert!(
        sb.servers[new]
            .try_sql("SELECT COUNT(*) FROM test.t")
            .is_err()
    );

    // The pod restarts: the init container swaps the copy in, the server starts on it.
    drop(recipient_agent);
    sb.servers[new].kill9();
    let swapped = restore(&sb.servers[new]);
    assert!(swapped.contains("MoveIn"), "{swapped}");
    sb.servers[new].start();
    assert!(uptime(&connector, &keys[new]).await.unwrap() < started.elapsed());
    attach_copy(&connector, &keys[new], &keys[0], &gtid).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acknowledged = writer.stop();
    assert!(acknowledged > 0, "the writer wrote");
    sb.servers[new].wait_caught_up(&sb.servers[0]);
    assert_eq!(sb.servers[new].io_running(), "Yes");
    let caught_up = started.elapsed();
    println!("caught up {caught_up:?} after the copy began, {acknowledged} rows written meanwhile");
    let expected = rows + acknowledged;
    assert_eq!(row_count(&sb.servers[0]), expected);
    assert_eq!(row_count(&sb.servers[new]), expected);
    // The data it had is kept aside, and is no database.
    assert!(
        sb.servers[new]
            .datadir()
            .join(".korc-replaced/mysql")
            .is_dir()
    );
    assert!(!sb.servers[new].sql("SHOW DATABASES").contains("korc"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_a_copy_interrupted_by_a_killed_agent_or_donor_starts_again_from_scratch() {
    let (mut sb, new, connector) = mariadb_with_purged_logs(500);
    let certs = sb.certificates.as_ref().unwrap();
    let donor_agent = Agent::start(&sb.servers[1], Some(certs));
    let mut recipient_agent = Agent::start(&sb.servers[new], Some(certs));
    let client = agent_client(&sb);
    let staging = korc::agent::restore::staging(&sb.servers[new].datadir());
    let request = |mib| request_from(&donor_agent, mib);
    let copied = |client: &korc::agent::client::AgentClient, address: String| {
        let client = client.clone();
        async move { client.copy_report(&address).await.unwrap() }
    };

    // The recipient's agent killed -9 half-way through a slow copy.
    client
        .start_copy(&recipient_agent.address, &request(1))
        .await
        .unwrap();
    let mut report = copied(&client, recipient_agent.address.clone()).await;
    while report.bytes_copied < 2 * 1024 * 1024 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        report = copied(&client, recipient_agent.address.clone()).await;
    }
    assert!(report.bytes_copied < report.bytes_estimated, "{report:?}");
    // A second copy is refused while one runs.
    assert!(matches!(
        client
            .start_copy(&recipient_agent.address, &request(1))
            .await,
        Err(korc::agent::AgentError::Refused { status: 409, .. })
    ));
    recipient_agent.kill9();
    assert!(staging.is_dir(), "a half-copied directory");
    // The pod restarting then would start the server on its own data.
    assert_eq!(
        korc::agent::restore::staged(&sb.servers[new].datadir()).unwrap(),
        korc::agent::restore::Staged::Incomplete
    );
    let kept = sb.servers[new]
        .datadir()
        .join("ibdata1")
        .metadata()
        .unwrap()
        .modified()
        .unwrap();
    assert!(restore(&sb.servers[new]).contains("Discard"));
    assert!(!staging.exists());
    assert_eq!(
        sb.servers[new]
            .datadir()
            .join("ibdata1")
            .metadata()
            .unwrap()
            .modified()
            .unwrap(),
        kept
    );

    // The donor's server killed -9 in the middle of the next copy: it fails, and
    // nothing of it stays.
    let recipient_agent = Agent::start(&sb.servers[new], Some(certs));
    assert_eq!(
        copied(&client, recipient_agent.address.clone()).await.state,
        korc::agent::protocol::CopyState::Idle
    );
    client
        .start_copy(&recipient_agent.address, &request(1))
        .await
        .unwrap();
    let mut report = copied(&client, recipient_agent.address.clone()).await;
    while report.bytes_copied < 1024 * 1024 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        report = copied(&client, recipient_agent.address.clone()).await;
    }
    sb.servers[1].kill9();
    let deadline = Instant::now() + Duration::from_secs(60);
    while report.state != korc::agent::protocol::CopyState::Failed {
        assert!(Instant::now() < deadline, "{report:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = copied(&client, recipient_agent.address.clone()).await;
    }
    println!("failed as it should: {:?}", report.error);
    assert!(!staging.exists(), "the failed copy is deleted");

    // From scratch again, from the other replica: it completes.
    let donor_agent = Agent::start(&sb.servers[2], Some(certs));
    let progress = std::sync::Mutex::new(None);
    let gtid = clone_mariadb(
        &client,
        &recipient_agent.address,
        &request_from(&donor_agent, 0),
        &progress,
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    drop(recipient_agent);
    sb.servers[new].kill9();
    restore(&sb.servers[new]);
    sb.servers[new].start();
    let keys: Vec<InstanceKey> = sb
        .servers
        .iter()
        .map(|s| s.key().parse().unwrap())
        .collect();
    attach_copy(&connector, &keys[new], &keys[0], &gtid).await;
    sb.servers[0].sql("INSERT INTO test.t (v) VALUES ('after')");
    sb.servers[new].wait_caught_up(&sb.servers[0]);
    assert_eq!(row_count(&sb.servers[new]), 501);
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_agents_answer_the_replication_account_only() {
    let sb = Sandbox::replication_with_tls(Flavor::MariaDb, 2);
    let certs = sb.certificates.as_ref().unwrap();
    let agent = Agent::start(&sb.servers[1], Some(certs));
    let tls = Some(korc::agent::ClientTls {
        ca: certs.authority.cert.clone().into_bytes(),
        server_name: support::TLS_SERVER_NAME.into(),
    });
    let as_ = |user: &str, password: &str| {
        korc::agent::client::AgentClient::new(user, password, tls.clone())
    };
    let refused = |r: Result<_, korc::agent::AgentError>| match r {
        Err(korc::agent::AgentError::Refused { status, .. }) => status,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        refused(as_(REPL.0, "wrong").copy_report(&agent.address).await),
        403
    );
    assert_eq!(
        refused(as_(ADMIN.0, ADMIN.1).copy_report(&agent.address).await),
        403
    );
    let report = as_(REPL.0, REPL.1)
        .copy_report(&agent.address)
        .await
        .unwrap();
    assert_eq!(report.state, korc::agent::protocol::CopyState::Idle);
    // Another CA is not trusted.
    let other =
        korc::provisioning::certificates::issue_authority("other", std::time::SystemTime::now())
            .unwrap();
    let stranger = korc::agent::client::AgentClient::new(
        REPL.0,
        REPL.1,
        Some(korc::agent::ClientTls {
            ca: other.cert.into_bytes(),
            server_name: support::TLS_SERVER_NAME.into(),
        }),
    );
    assert!(stranger.copy_report(&agent.address).await.is_err());
}

/// A copy request from `donor`'s agent, at most `mib` MiB/s, saving nothing.
fn request_from(donor: &Agent, mib: u32) -> CloneRequest {
    CloneRequest {
        donor: donor.address.clone(),
        max_mib_per_second: mib,
        save: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_a_copy_over_errant_transactions_saves_them_first() {
    let mut sb = Sandbox::replication_with_tls(Flavor::MariaDb, 3);
    sb.servers[0].sql("INSERT INTO test.t (v) VALUES ('shared-1'), ('shared-2')");
    for i in 1..3 {
        sb.servers[i].wait_caught_up(&sb.servers[0]);
    }
    // db-2 writes what the primary never gets: errant transactions.
    for v in ["errant-1", "errant-2"] {
        sb.servers[2].sql(&format!("INSERT INTO test.t (v) VALUES ('{v}')"));
    }
    sb.servers[0].sql("INSERT INTO test.t (v) VALUES ('shared-3')");
    sb.servers[1].wait_caught_up(&sb.servers[0]);
    let state = |s: &support::Server| {
        korc::topology::gtid::MariaDbBinlogState::parse(&s.variable("gtid_binlog_state")).unwrap()
    };
    let errant = state(&sb.servers[2]).errant_ranges(&state(&sb.servers[0]));
    assert_eq!(errant.len(), 1, "{errant:?}");
    let errant_gtids = format!("0-{}-{}", sb.servers[2].server_id, errant[0].through);

    let certs = sb.certificates.as_ref().unwrap();
    let donor_agent = Agent::start(&sb.servers[1], Some(certs));
    let recipient_agent = Agent::start(&sb.servers[2], Some(certs));
    let client = agent_client(&sb);
    let save = korc::agent::save::SaveRequest {
        name: "20261130T094512Z".into(),
        errant_gtids: errant_gtids.clone(),
        errant: errant.clone(),
    };
    let datadir = sb.servers[2].datadir();
    let saved = korc::agent::save::saved_dir(&datadir, &save.name);
    // A copy that fails after the save (no donor answers) leaves nothing behind: the
    // errant transactions are still the server's own.
    let unanswered = CloneRequest {
        donor: format!("{}:1", sb.servers[1].ip),
        max_mib_per_second: 0,
        save: Some(save.clone()),
    };
    let progress = std::sync::Mutex::new(None);
    let failed = clone_mariadb(
        &client,
        &recipient_agent.address,
        &unanswered,
        &progress,
        Duration::from_secs(60),
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(!saved.exists() && !korc::agent::restore::staging(&datadir).exists());
    assert!(
        sb.servers[2]
            .sql("SELECT COUNT(*) FROM test.t WHERE v LIKE 'errant-%'")
            .starts_with('2')
    );

    let request = CloneRequest {
        save: Some(save.clone()),
        ..request_from(&donor_agent, 0)
    };
    let gtid = clone_mariadb(
        &client,
        &recipient_agent.address,
        &request,
        &progress,
        Duration::from_secs(120),
    )
    .await
    .unwrap();

    // The errant transactions' events are saved, and only they.
    let events =
        std::fs::read_to_string(saved.join(korc::agent::save::events_file(&errant[0]))).unwrap();
    assert!(events.contains("'errant-1'") && events.contains("'errant-2'"));
    assert!(!events.contains("'shared-"), "only the errant transactions");
    let readme = std::fs::read_to_string(saved.join("README")).unwrap();
    assert!(readme.contains(&errant_gtids), "{readme}");

    // The pod restarts on the copy: the old data goes to the save, whole.
    drop(recipient_agent);
    sb.servers[2].kill9();
    let swapped = restore(&sb.servers[2]);
    assert!(swapped.contains("MoveIn"), "{swapped}");
    assert!(!swapped.contains("ClearReplaced"), "{swapped}");
    let data = korc::agent::save::saved_data(&datadir, &save.name);
    assert!(data.join("test").is_dir() && data.join("mysql").is_dir());
    sb.servers[2].start();
    assert!(!sb.servers[2].sql("SHOW DATABASES").contains("korc"));
    let key: InstanceKey = sb.servers[2].key().parse().unwrap();
    let primary: InstanceKey = sb.servers[0].key().parse().unwrap();
    attach_copy(&tls_connector(&sb), &key, &primary, &gtid).await;
    sb.servers[2].wait_caught_up(&sb.servers[0]);
    // The rebuilt instance holds the primary's rows and no errant one.
    assert_eq!(
        sb.servers[2].sql("SELECT GROUP_CONCAT(v ORDER BY v) FROM test.t"),
        "shared-1,shared-2,shared-3"
    );
    assert!(
        state(&sb.servers[2])
            .errant_ranges(&state(&sb.servers[0]))
            .is_empty()
    );
    // The saved binary logs still hold the errant transactions.
    let index = std::fs::read_to_string(data.join("mysql-bin.index")).unwrap();
    let again = std::process::Command::new("mariadb-binlog")
        .args(korc::agent::save::binlog_args(
            &errant[0],
            &korc::agent::save::binlogs_of(&index, &data),
        ))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("'errant-2'"));
}
