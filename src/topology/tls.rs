//! The certificate an instance serves, and having it load a renewed one without a
//! restart.
//!
//! A renewed certificate reaches a server's files some time after it was issued (a
//! mounted Secret is refreshed periodically), so korc compares what each server serves
//! with the certificate it expects and reloads until they agree.

use super::Result;
use super::instance::InstanceKey;
use super::session::Connector;
use std::time::{Duration, SystemTime};

/// Reads OpenSSL's text form of a certificate time (`Mar  1 12:00:00 2027 GMT`, what
/// the servers show as `Ssl_server_not_after`).
pub fn parse_openssl_time(text: &str) -> Option<SystemTime> {
    let mut words = text.split_whitespace();
    let month = match words.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let day: u32 = words.next()?.parse().ok()?;
    let mut clock = words.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    let year: i64 = words.next()?.parse().ok()?;
    if words.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, i64::from(day));
    let secs = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a server serves, against what korc expects it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The expected certificate.
    Current,
    /// Another one (or none), still after a reload: the files have not changed yet.
    Stale,
}

/// The end of validity of the certificate `key` serves to new connections; `None`
/// when it serves none. Read over a new connection: a server shows the certificate
/// of the connection asking, and a kept one may predate a reload.
pub async fn served_not_after(
    connector: &Connector,
    key: &InstanceKey,
) -> Result<Option<SystemTime>> {
    let mut s = connector.connect_new(key).await?;
    let q = s.dialect.served_certificate_query();
    let values = s.name_values(q).await?;
    Ok(values
        .get("Ssl_server_not_after")
        .and_then(|v| parse_openssl_time(v)))
}

/// Has `key` reload its certificate files unless it already serves the certificate
/// that ends at `expected_not_after`; says whether it serves that one afterwards.
pub async fn ensure_served(
    connector: &Connector,
    key: &InstanceKey,
    expected_not_after: SystemTime,
) -> Result<Served> {
    let same = |t: Option<SystemTime>| t == Some(expected_not_after);
    if same(served_not_after(connector, key).await?) {
        return Ok(Served::Current);
    }
    let mut s = connector.connect(key).await?;
    let reload = s.dialect.reload_tls();
    s.exec(reload).await?;
    drop(s);
    Ok(if same(served_not_after(connector, key).await?) {
        Served::Current
    } else {
        Served::Stale
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn reads_openssl_times() {
        let cases = [
            ("Jan  1 00:00:00 1970 GMT", Some(at(0))),
            ("Mar  1 12:00:00 2027 GMT", Some(at(1_803_902_400))),
            ("Feb 29 23:59:59 2028 GMT", Some(at(1_835_481_599))),
            ("Dec 31 23:59:59 2099 GMT", Some(at(4_102_444_799))),
            ("", None),
            ("Foo  1 00:00:00 2027 GMT", None),
            ("Mar  1 25:00:00 2027 GMT", None),
            ("Mar  1 12:00:00 2027", None),
            ("Mar 32 12:00:00 2027 GMT", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_openssl_time(text), expected, "{text:?}");
        }
    }
}
