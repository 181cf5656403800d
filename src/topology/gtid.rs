//! GTID positions and sets of both flavors, and the comparisons recovery needs.
//!
//! MariaDB describes a position as the last GTID per replication domain
//! (`domain-server-seq`, comma separated); MySQL describes the set of executed
//! transactions as intervals per source UUID (`uuid:1-5:7-9`, optionally with a tag in
//! 8.4). Both are compared the same way by the engine: "does A contain everything B
//! has", and "how many transactions does A hold".

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A GTID text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed GTID text {text:?}: {reason}")]
pub struct GtidParseError {
    text: String,
    reason: &'static str,
}

fn parse_error(text: &str, reason: &'static str) -> GtidParseError {
    GtidParseError {
        text: text.to_string(),
        reason,
    }
}

/// One MariaDB GTID: `domain-server_id-seq_no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariaDbGtid {
    /// Replication domain.
    pub domain: u32,
    /// server_id of the server that originally wrote the transaction.
    pub server_id: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl fmt::Display for MariaDbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

fn parse_mariadb_list(text: &str) -> Result<Vec<MariaDbGtid>, GtidParseError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split('-');
        let (Some(d), Some(s), Some(n), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(parse_error(text, "expected domain-server_id-seq_no"));
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| parse_error(text, "not a number"))
        };
        let domain =
            u32::try_from(num(d)?).map_err(|_| parse_error(text, "domain out of range"))?;
        let server_id =
            u32::try_from(num(s)?).map_err(|_| parse_error(text, "server_id out of range"))?;
        out.push(MariaDbGtid {
            domain,
            server_id,
            seq: num(n)?,
        });
    }
    Ok(out)
}

/// A MariaDB position: the last GTID of each replication domain
/// (`@@gtid_binlog_pos`, `@@gtid_current_pos`, `@@gtid_slave_pos`, `Gtid_IO_Pos`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaDbPosition(BTreeMap<u32, MariaDbGtid>);

impl MariaDbPosition {
    /// Parses MariaDB's comma-separated GTID list; an empty string is the empty position.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut map = BTreeMap::new();
        for g in parse_mariadb_list(text)? {
            if map.insert(g.domain, g).is_some() {
                return Err(parse_error(text, "two GTIDs for one domain"));
            }
        }
        Ok(Self(map))
    }

    /// True when, in every domain of `other`, this position is at least as far.
    pub fn contains(&self, other: &Self) -> bool {
        other
            .0
            .values()
            .all(|o| self.0.get(&o.domain).is_some_and(|s| s.seq >= o.seq))
    }

    /// Per domain, the further of the two positions.
    pub fn max(&self, other: &Self) -> Self {
        let mut out = self.0.clone();
        for o in other.0.values() {
            out.entry(o.domain)
                .and_modify(|s| {
                    if o.seq > s.seq {
                        *s = *o;
                    }
                })
                .or_insert(*o);
        }
        Self(out)
    }

    /// Sum of the sequence numbers: a count of transactions for ranking.
    pub fn transactions(&self) -> u64 {
        self.0.values().map(|g| g.seq).sum()
    }

    /// True when no domain has any transaction.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for MariaDbPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.values().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// MariaDB's `@@gtid_binlog_state`: the last sequence number per (domain, server_id) in
/// the binary log. Unlike a position it remembers every server that ever wrote, which is
/// what errant-transaction detection needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaDbBinlogState(BTreeMap<(u32, u32), u64>);

impl MariaDbBinlogState {
    /// Parses the comma-separated list of `@@gtid_binlog_state`.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut map = BTreeMap::new();
        for g in parse_mariadb_list(text)? {
            map.insert((g.domain, g.server_id), g.seq);
        }
        Ok(Self(map))
    }

    /// The GTIDs this state holds beyond `source`: transactions written by a server
    /// (domain, server_id) that the source either never saw or saw fewer of.
    pub fn errant_against(&self, source: &Self) -> Vec<MariaDbGtid> {
        self.0
            .iter()
            .filter(|(k, seq)| source.0.get(k).is_none_or(|s| s < *seq))
            .map(|(&(domain, server_id), &seq)| MariaDbGtid {
                domain,
                server_id,
                seq,
            })
            .collect()
    }
}

/// A MySQL GTID set: intervals of transaction numbers per source (`uuid` or `uuid:tag`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlGtidSet(BTreeMap<String, Vec<(u64, u64)>>);

impl MysqlGtidSet {
    /// Parses MySQL's textual GTID set (`uuid:1-5:7,uuid2:1-3`, with 8.4 tags
    /// `uuid:tag:1-3`); newlines that MySQL inserts after commas are accepted.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut set = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut fields = part.split(':');
            let uuid = fields.next().unwrap_or_default().to_ascii_lowercase();
            if uuid.len() != 36 {
                return Err(parse_error(text, "source is not a UUID"));
            }
            let mut tag = String::new();
            for field in fields {
                let bounds: Vec<&str> = field.split('-').collect();
                let num = |v: &str| v.trim().parse::<u64>().ok();
                let interval = match bounds.as_slice() {
                    [a] => num(a).map(|a| (a, a)),
                    [a, b] => num(a).zip(num(b)),
                    _ => None,
                };
                match interval {
                    Some((a, b)) if a >= 1 && a <= b => {
                        let source = if tag.is_empty() {
                            uuid.clone()
                        } else {
                            format!("{uuid}:{tag}")
                        };
                        set.add(&source, a, b);
                    }
                    Some(_) => return Err(parse_error(text, "empty or zero interval")),
                    None if field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                        tag = field.to_ascii_lowercase();
                    }
                    None => return Err(parse_error(text, "bad interval")),
                }
            }
        }
        Ok(set)
    }

    fn add(&mut self, source: &str, a: u64, b: u64) {
        let intervals = self.0.entry(source.to_string()).or_default();
        intervals.push((a, b));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(s, e) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *intervals = merged;
    }

    /// The union of two sets.
    pub fn union(&self, other: &Self) -> Self {
        let mut out = self.clone();
        for (source, intervals) in &other.0 {
            for &(a, b) in intervals {
                out.add(source, a, b);
            }
        }
        out
    }

    /// The transactions of `self` that `other` lacks.
    pub fn subtract(&self, other: &Self) -> Self {
        let mut out = Self::default();
        for (source, intervals) in &self.0 {
            let holes = other.0.get(source).map(Vec::as_slice).unwrap_or_default();
            for &(a, b) in intervals {
                let mut start = a;
                for &(ha, hb) in holes {
                    if hb < start || ha > b {
                        continue;
                    }
                    if ha > start {
                        out.add(source, start, ha - 1);
                    }
                    start = hb.saturating_add(1);
                    if start > b {
                        break;
                    }
                }
                if start <= b {
                    out.add(source, start, b);
                }
            }
        }
        out
    }

    /// True when every transaction of `other` is in `self`.
    pub fn contains(&self, other: &Self) -> bool {
        other.subtract(self).is_empty()
    }

    /// The part of the set written by one source UUID (any tag).
    pub fn only_source(&self, uuid: &str) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(s, _)| s.split(':').next() == Some(uuid))
                .map(|(s, i)| (s.clone(), i.clone()))
                .collect(),
        )
    }

    /// Number of transactions in the set.
    pub fn transactions(&self) -> u64 {
        self.0.values().flatten().map(|(a, b)| b - a + 1).sum()
    }

    /// True for the empty set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (source, intervals) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(source)?;
            for (a, b) in intervals {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

/// A replication position of either flavor, as recovery compares them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flavor", content = "gtids", rename_all = "lowercase")]
pub enum GtidPosition {
    /// MariaDB: last GTID per domain.
    #[serde(with = "mariadb_text")]
    MariaDb(MariaDbPosition),
    /// MySQL: executed set.
    #[serde(with = "mysql_text")]
    Mysql(MysqlGtidSet),
}

impl GtidPosition {
    /// True when `self` holds every transaction of `other`. Positions of different
    /// flavors never contain each other.
    pub fn contains(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::MariaDb(a), Self::MariaDb(b)) => a.contains(b),
            (Self::Mysql(a), Self::Mysql(b)) => a.contains(b),
            _ => false,
        }
    }

    /// A transaction count used to rank positions that do not contain each other.
    pub fn transactions(&self) -> u64 {
        match self {
            Self::MariaDb(p) => p.transactions(),
            Self::Mysql(s) => s.transactions(),
        }
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MariaDb(p) => p.fmt(f),
            Self::Mysql(s) => s.fmt(f),
        }
    }
}

mod mariadb_text {
    use super::MariaDbPosition;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(p: &MariaDbPosition, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MariaDbPosition, D::Error> {
        MariaDbPosition::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

mod mysql_text {
    use super::MysqlGtidSet;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(p: &MysqlGtidSet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MysqlGtidSet, D::Error> {
        MysqlGtidSet::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4f22ab58-82db-22f2-8f44-d91bb8530673";

    #[test]
    fn mariadb_position_parse_and_compare() {
        let p = MariaDbPosition::parse("0-1-11,1-2-5").unwrap();
        assert_eq!(p.to_string(), "0-1-11,1-2-5");
        let q = MariaDbPosition::parse("0-1-9").unwrap();
        assert!(p.contains(&q));
        assert!(!q.contains(&p));
        assert!(p.contains(&MariaDbPosition::parse("").unwrap()));
        assert_eq!(p.transactions(), 16);
        let r = MariaDbPosition::parse("0-2-12").unwrap();
        assert_eq!(p.max(&r).to_string(), "0-2-12,1-2-5");
    }

    #[test]
    fn mariadb_position_rejects_garbage() {
        for bad in ["0-1", "a-b-c", "0-1-2-3", "0-1-2,0-1-3", "9999999999-1-1"] {
            assert!(MariaDbPosition::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mariadb_errant_against_source() {
        let primary = MariaDbBinlogState::parse("0-1-20,0-2-7").unwrap();
        let clean = MariaDbBinlogState::parse("0-1-18,0-2-7").unwrap();
        assert!(clean.errant_against(&primary).is_empty());
        let errant = MariaDbBinlogState::parse("0-1-20,0-3-21").unwrap();
        assert_eq!(
            errant.errant_against(&primary),
            vec![MariaDbGtid {
                domain: 0,
                server_id: 3,
                seq: 21
            }]
        );
    }

    #[test]
    fn mysql_set_parse_union_subtract() {
        let s = MysqlGtidSet::parse(&format!("{A}:1-5:7-9,\n{B}:1-3")).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-5:7-9,{B}:1-3"));
        assert_eq!(s.transactions(), 11);
        let t = MysqlGtidSet::parse(&format!("{A}:6")).unwrap();
        assert_eq!(s.union(&t).to_string(), format!("{A}:1-9,{B}:1-3"));
        let u = MysqlGtidSet::parse(&format!("{A}:2-3:8")).unwrap();
        assert_eq!(s.subtract(&u).to_string(), format!("{A}:1:4-5:7:9,{B}:1-3"));
        assert!(s.contains(&u));
        assert!(!u.contains(&s));
        assert!(s.subtract(&s).is_empty());
    }

    #[test]
    fn mysql_set_with_tags() {
        let s = MysqlGtidSet::parse(&format!("{A}:1-3:mytag:1-2")).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-3,{A}:mytag:1-2"));
        assert_eq!(s.transactions(), 5);
    }

    #[test]
    fn mysql_set_rejects_garbage() {
        for bad in [
            "nope:1-3",
            &format!("{A}:3-1"),
            &format!("{A}:0"),
            &format!("{A}:1-2-3"),
        ] {
            assert!(MysqlGtidSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn positions_of_different_flavors_do_not_compare() {
        let m = GtidPosition::MariaDb(MariaDbPosition::parse("0-1-1").unwrap());
        let y = GtidPosition::Mysql(MysqlGtidSet::default());
        assert!(!m.contains(&y));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"flavor":"mariadb","gtids":"0-1-1"}"#);
        assert_eq!(serde_json::from_str::<GtidPosition>(&json).unwrap(), m);
    }
}
