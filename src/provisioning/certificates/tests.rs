use super::*;
use x509_parser::prelude::FromDer;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    // A fixed instant: the results must not depend on when the tests run.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn der(pem: &str) -> Vec<u8> {
    parse_x509_pem(pem.as_bytes()).unwrap().1.contents
}

#[test]
fn names_cover_pods_wildcard_and_services() {
    let names = server_names("db", "prod", 3);
    for expected in [
        "db.prod.svc",
        "*.db.prod.svc",
        "db-0.db.prod.svc",
        "db-2.db.prod.svc",
        "db-primary.prod.svc",
        "db-replicas.prod.svc",
        "db-primary",
        "db-primary.prod.svc.cluster.local",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "db-3.db.prod.svc"));
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no duplicates: {names:?}");
    assert_eq!(names[0], cluster_server_name("db", "prod"));
}

#[test]
fn the_cluster_ca_signs_a_server_certificate_with_the_names_and_lifetime() {
    let ca = issue_authority("db", now()).unwrap();
    let names = server_names("db", "prod", 2);
    let server = issue_server(&ca, &names, now(), SERVER_LIFETIME).unwrap();
    assert_eq!(server.ca, ca.cert);

    let f = facts(&server.cert).unwrap();
    assert_eq!(f.names, names);
    assert_eq!(f.not_after, now() + SERVER_LIFETIME);
    assert!(f.not_before < now() && f.not_before >= now() - BACKDATE);

    let ca_der = der(&ca.cert);
    let (_, ca_x509) = x509_parser::certificate::X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca_x509.is_ca());
    let server_der = der(&server.cert);
    let (_, server_x509) =
        x509_parser::certificate::X509Certificate::from_der(&server_der).unwrap();
    assert!(!server_x509.is_ca());
    assert_eq!(server_x509.issuer(), ca_x509.subject());
    server_x509
        .verify_signature(Some(ca_x509.public_key()))
        .expect("signed by the cluster's CA");

    let other = issue_authority("db", now()).unwrap();
    let other_der = der(&other.cert);
    let (_, other_x509) = x509_parser::certificate::X509Certificate::from_der(&other_der).unwrap();
    assert!(
        server_x509
            .verify_signature(Some(other_x509.public_key()))
            .is_err(),
        "another cluster's CA does not verify it"
    );
    assert_eq!(
        facts(&ca.cert).unwrap().not_after,
        now() + CA_LIFETIME,
        "the CA outlives many server certificates"
    );
}

#[test]
fn every_certificate_gets_a_new_serial_and_key() {
    let ca = issue_authority("db", now()).unwrap();
    let names = server_names("db", "ns", 1);
    let a = issue_server(&ca, &names, now(), SERVER_LIFETIME).unwrap();
    let b = issue_server(&ca, &names, now(), SERVER_LIFETIME).unwrap();
    assert_ne!(
        facts(&a.cert).unwrap().serial,
        facts(&b.cert).unwrap().serial
    );
    assert_ne!(a.key, b.key);
}

#[test]
fn renewal_is_due_when_less_than_a_third_remains() {
    let start = now();
    let end = start + DAY * 90;
    let cases = [
        (start, false),
        (start + DAY * 59, false),
        (start + DAY * 60 - Duration::from_secs(1), false),
        (start + DAY * 60 + Duration::from_secs(1), true),
        (start + DAY * 89, true),
        (end + DAY, true),
    ];
    for (at, due) in cases {
        assert_eq!(renewal_due(start, end, at), due, "at {at:?}");
    }
}

#[test]
fn reissue_decision() {
    let ca = issue_authority("db", now()).unwrap();
    let names = server_names("db", "ns", 2);
    let current = issue_server(&ca, &names, now(), SERVER_LIFETIME).unwrap();
    let later = |days: u32| now() + DAY * days;

    assert_eq!(reissue(None, &ca, &names, now()), Some(Reissue::Missing));
    assert_eq!(reissue(Some(&current), &ca, &names, later(1)), None);
    assert_eq!(
        reissue(Some(&current), &ca, &names, later(61)),
        Some(Reissue::Renewal)
    );
    assert_eq!(
        reissue(Some(&current), &ca, &server_names("db", "ns", 3), later(1)),
        Some(Reissue::Names),
        "a new pod's name is missing"
    );
    assert_eq!(
        reissue(Some(&current), &ca, &server_names("db", "ns", 1), later(1)),
        None,
        "a shrunk cluster keeps its certificate"
    );
    let other = issue_authority("db", now()).unwrap();
    assert_eq!(
        reissue(Some(&current), &other, &names, later(1)),
        Some(Reissue::OtherAuthority)
    );
    let garbled = ServerCertificate {
        cert: "not a certificate".into(),
        ..current.clone()
    };
    assert_eq!(
        reissue(Some(&garbled), &ca, &names, later(1)),
        Some(Reissue::Missing)
    );
    let renewed = issue_server(&ca, &names, later(61), SERVER_LIFETIME).unwrap();
    assert_eq!(reissue(Some(&renewed), &ca, &names, later(61)), None);
}

#[test]
fn secret_data_round_trips_and_hides_keys_from_debug() {
    let ca = issue_authority("db", now()).unwrap();
    let server = issue_server(&ca, &server_names("db", "ns", 1), now(), SERVER_LIFETIME).unwrap();
    let bytes = |m: BTreeMap<String, String>| -> BTreeMap<String, Vec<u8>> {
        m.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
    };
    assert_eq!(
        Authority::from_secret_data(&bytes(ca.to_secret_data())),
        Some(ca.clone())
    );
    let data = bytes(server.to_secret_data());
    assert_eq!(
        ServerCertificate::from_secret_data(&data),
        Some(server.clone())
    );
    let mut partial = data.clone();
    partial.remove(SERVER_KEY);
    assert_eq!(ServerCertificate::from_secret_data(&partial), None);
    let shown = format!("{ca:?} {server:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}
