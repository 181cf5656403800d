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

/// Why a GTID text does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GtidParseErrorKind {
    /// A MariaDB GTID is not `domain-server_id-seq_no`.
    NotATriple,
    /// A field that must be a number is not one.
    NotANumber,
    /// A number is beyond what the server allows (domain and server_id are 32-bit,
    /// MySQL transaction numbers at most 2^63-1).
    OutOfRange,
    /// A MariaDB position names one domain twice.
    DuplicateDomain,
    /// A MariaDB binlog state names one (domain, server_id) twice.
    DuplicateServer,
    /// A MySQL source is not a UUID.
    NotAUuid,
    /// A MySQL tag is not 1–32 letters, digits or underscores starting with a letter
    /// or underscore.
    BadTag,
    /// A MySQL interval is empty (`5-3`) or starts at zero.
    EmptyInterval,
    /// A MySQL interval is not `n` or `n-m`.
    BadInterval,
    /// A MySQL source or tag comes without any interval.
    NoIntervals,
}

impl fmt::Display for GtidParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotATriple => "expected domain-server_id-seq_no",
            Self::NotANumber => "not a number",
            Self::OutOfRange => "number out of range",
            Self::DuplicateDomain => "two GTIDs for one domain",
            Self::DuplicateServer => "two GTIDs for one domain and server_id",
            Self::NotAUuid => "source is not a UUID",
            Self::BadTag => "malformed tag",
            Self::EmptyInterval => "empty or zero interval",
            Self::BadInterval => "bad interval",
            Self::NoIntervals => "source without transactions",
        })
    }
}

/// A GTID text that does not parse: the offending element and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed GTID text at {element:?}: {kind}")]
pub struct GtidParseError {
    element: String,
    kind: GtidParseErrorKind,
}

impl GtidParseError {
    fn new(element: &str, kind: GtidParseErrorKind) -> Self {
        // A GTID set can be megabytes long: quote only the start of the bad element.
        const SHOWN: usize = 80;
        let element = match element.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}…", &element[..cut]),
            None => element.to_string(),
        };
        Self { element, kind }
    }

    /// Why the text does not parse.
    pub fn kind(&self) -> GtidParseErrorKind {
        self.kind
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
    use GtidParseErrorKind::*;
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let err = |kind| GtidParseError::new(part, kind);
        let mut it = part.split('-');
        let (Some(d), Some(s), Some(n), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(err(NotATriple));
        };
        let num = |v: &str| {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                v.parse::<u64>().map_err(|_| err(OutOfRange))
            } else {
                Err(err(NotANumber))
            }
        };
        let narrow = |v: u64| u32::try_from(v).map_err(|_| err(OutOfRange));
        out.push(MariaDbGtid {
            domain: narrow(num(d)?)?,
            server_id: narrow(num(s)?)?,
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
                return Err(GtidParseError::new(
                    &g.to_string(),
                    GtidParseErrorKind::DuplicateDomain,
                ));
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

    /// Sum of the sequence numbers: a count of transactions for ranking (saturating,
    /// so hostile numbers cannot wrap a far position into a short one).
    pub fn transactions(&self) -> u64 {
        self.0.values().fold(0, |n, g| n.saturating_add(g.seq))
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
            if map.insert((g.domain, g.server_id), g.seq).is_some() {
                return Err(GtidParseError::new(
                    &g.to_string(),
                    GtidParseErrorKind::DuplicateServer,
                ));
            }
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

    /// The binary log events [`Self::errant_against`] names, as ranges a binary log
    /// reader can select: per (domain, server_id) the transactions after the last one
    /// the source holds (all of them when it holds none) through the last one here.
    pub fn errant_ranges(&self, source: &Self) -> Vec<ErrantRange> {
        self.errant_against(source)
            .into_iter()
            .map(|g| ErrantRange {
                domain: g.domain,
                server_id: g.server_id,
                after: source.0.get(&(g.domain, g.server_id)).copied(),
                through: g.seq,
            })
            .collect()
    }
}

/// MariaDB transactions of one writer (domain, server_id) that only one instance
/// holds: sequence numbers after `after` (from the first when none) through `through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrantRange {
    /// Replication domain.
    pub domain: u32,
    /// The server that wrote them.
    pub server_id: u32,
    /// The last sequence number the source holds of this writer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The last errant sequence number.
    pub through: u64,
}

/// Closed intervals `(first, last)` of transaction numbers, kept sorted, disjoint and
/// non-adjacent, so that every set operation is one linear merge.
type Intervals = Vec<(u64, u64)>;

/// MySQL's largest transaction number (GNO_END - 1): numbers stay below `u64::MAX`, so
/// `last + 1` never overflows.
const MAX_TRANSACTION: u64 = i64::MAX as u64;

/// Appends an interval not starting before the last one, merging when they touch.
fn push_merging(out: &mut Intervals, (first, last): (u64, u64)) {
    match out.last_mut() {
        Some(prev) if first <= prev.1 + 1 => prev.1 = prev.1.max(last),
        _ => out.push((first, last)),
    }
}

/// Sorts and merges intervals given in any order: O(n log n).
fn normalise(mut intervals: Intervals) -> Intervals {
    intervals.sort_unstable();
    let mut out = Intervals::with_capacity(intervals.len());
    for i in intervals {
        push_merging(&mut out, i);
    }
    out.shrink_to_fit();
    out
}

/// `a ∪ b` of two normalised lists: O(|a| + |b|).
fn union_of(a: &[(u64, u64)], b: &[(u64, u64)]) -> Intervals {
    let mut out = Intervals::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = if j == b.len() || (i < a.len() && a[i] <= b[j]) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        push_merging(&mut out, next);
    }
    out
}

/// `a ∖ b` of two normalised lists: O(|a| + |b|).
fn difference_of(a: &[(u64, u64)], b: &[(u64, u64)]) -> Intervals {
    let mut out = Intervals::new();
    let mut j = 0;
    for &(first, last) in a {
        while j < b.len() && b[j].1 < first {
            j += 1;
        }
        let mut from = first;
        let mut covered = false;
        while j < b.len() && b[j].0 <= last {
            let (hole_first, hole_last) = b[j];
            if hole_first > from {
                out.push((from, hole_first - 1));
            }
            if hole_last >= last {
                // The hole may reach into the next interval too: keep it.
                covered = true;
                break;
            }
            from = hole_last + 1;
            j += 1;
        }
        if !covered {
            out.push((from, last));
        }
    }
    out
}

/// True when normalised `outer` holds every number of normalised `inner`: each inner
/// interval must lie within one outer interval, since outer ones never touch.
fn covers(outer: &[(u64, u64)], inner: &[(u64, u64)]) -> bool {
    let mut j = 0;
    inner.iter().all(|&(first, last)| {
        while j < outer.len() && outer[j].1 < first {
            j += 1;
        }
        j < outer.len() && outer[j].0 <= first && last <= outer[j].1
    })
}

/// `8-4-4-4-12` hexadecimal digits, as servers print `server_uuid`.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// MySQL 8.4 tags: 1–32 characters of `[a-z0-9_]`, not starting with a digit.
fn is_tag(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// Parses `n` or `n-m`; `None` when it is no interval at all (so possibly a tag).
fn parse_interval(field: &str) -> Option<Result<(u64, u64), GtidParseErrorKind>> {
    use GtidParseErrorKind::*;
    let number = |v: &str| {
        let v = v.trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NotANumber);
        }
        match v.parse::<u64>() {
            Ok(n) if n <= MAX_TRANSACTION => Ok(n),
            _ => Err(OutOfRange),
        }
    };
    if !field
        .trim()
        .starts_with(|c: char| c.is_ascii_digit() || c == '-')
    {
        return None;
    }
    let bounds = match field.split_once('-') {
        None => number(field).map(|a| (a, a)),
        Some((a, b)) => number(a).and_then(|a| Ok((a, number(b)?))),
    };
    Some(match bounds {
        Ok((a, b)) if a >= 1 && a <= b => Ok((a, b)),
        Ok(_) => Err(EmptyInterval),
        Err(NotANumber) => Err(BadInterval),
        Err(e) => Err(e),
    })
}

/// A MySQL GTID set: intervals of transaction numbers per source (`uuid` or `uuid:tag`).
/// Parsing is O(n log n) in the number of intervals; union, subtraction and
/// containment are linear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlGtidSet(BTreeMap<String, Intervals>);

impl MysqlGtidSet {
    /// Parses MySQL's textual GTID set (`uuid:1-5:7,uuid2:1-3`, with 8.4 tags
    /// `uuid:tag:1-3`), intervals in any order, overlapping or not; newlines that
    /// MySQL inserts after commas are accepted. Anything else is refused: a set that
    /// does not parse is never taken for an empty one.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        use GtidParseErrorKind::*;
        let mut sets: BTreeMap<String, Intervals> = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let err = |kind| GtidParseError::new(part, kind);
            let mut fields = part.split(':');
            let uuid = fields.next().unwrap_or_default().trim();
            if !is_uuid(uuid) {
                return Err(err(NotAUuid));
            }
            let uuid = uuid.to_ascii_lowercase();
            let mut intervals = sets.entry(uuid.clone()).or_default();
            // Intervals found since the UUID or the last tag; a tag may follow the UUID
            // directly (MySQL prints `uuid:tag:1-3` when no untagged ones are left).
            let mut found = false;
            let mut tagged = false;
            for field in fields {
                match parse_interval(field) {
                    Some(Ok(interval)) => {
                        intervals.push(interval);
                        found = true;
                    }
                    Some(Err(kind)) => return Err(err(kind)),
                    None if is_tag(field.trim()) => {
                        if tagged && !found {
                            return Err(err(NoIntervals));
                        }
                        tagged = true;
                        let tag = field.trim().to_ascii_lowercase();
                        intervals = sets.entry(format!("{uuid}:{tag}")).or_default();
                        found = false;
                    }
                    None if field.trim().is_empty() => return Err(err(BadInterval)),
                    None => return Err(err(BadTag)),
                }
            }
            if !found {
                return Err(err(NoIntervals));
            }
        }
        Ok(Self(
            sets.into_iter()
                // A UUID whose transactions are all tagged has no untagged entry.
                .filter(|(_, intervals)| !intervals.is_empty())
                .map(|(source, intervals)| (source, normalise(intervals)))
                .collect(),
        ))
    }

    /// The union of two sets.
    pub fn union(&self, other: &Self) -> Self {
        let mut out = self.0.clone();
        for (source, theirs) in &other.0 {
            let merged = match out.get(source) {
                Some(ours) => union_of(ours, theirs),
                None => theirs.clone(),
            };
            out.insert(source.clone(), merged);
        }
        Self(out)
    }

    /// The transactions of `self` that `other` lacks.
    pub fn subtract(&self, other: &Self) -> Self {
        Self(
            self.0
                .iter()
                .filter_map(|(source, ours)| {
                    let rest = match other.0.get(source) {
                        Some(theirs) => difference_of(ours, theirs),
                        None => ours.clone(),
                    };
                    (!rest.is_empty()).then(|| (source.clone(), rest))
                })
                .collect(),
        )
    }

    /// True when every transaction of `other` is in `self`.
    pub fn contains(&self, other: &Self) -> bool {
        other
            .0
            .iter()
            .all(|(source, theirs)| self.0.get(source).is_some_and(|ours| covers(ours, theirs)))
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

    /// Number of transactions in the set (saturating).
    pub fn transactions(&self) -> u64 {
        self.0
            .values()
            .flatten()
            .fold(0, |n, (a, b)| n.saturating_add(b - a + 1))
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

/// Every transaction an instance wrote or applied, in the form errant-transaction
/// detection compares: MariaDB's `gtid_binlog_state`, MySQL's `gtid_executed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidHistory {
    /// MariaDB: last sequence number per (domain, server_id).
    MariaDb(MariaDbBinlogState),
    /// MySQL: executed set.
    Mysql(MysqlGtidSet),
}

impl GtidHistory {
    /// The transactions of `self` that `source` lacks, as GTID text (empty when
    /// none); none for histories of different flavors. On MySQL the transactions of
    /// `source_uuid`, the source's own, never count: a replica cannot have written
    /// them, and MySQL adds a transaction to the source's `gtid_executed` only after
    /// its replicas may have it (a semi-sync `AFTER_SYNC` source sends it, then waits
    /// for the acknowledgement before committing). orchestrator leaves them out too.
    pub fn errant_against(&self, source: &Self, source_uuid: Option<&str>) -> Option<String> {
        match (self, source) {
            (Self::MariaDb(own), Self::MariaDb(theirs)) => {
                let errant: Vec<String> = own
                    .errant_against(theirs)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Some(errant.join(","))
            }
            (Self::Mysql(own), Self::Mysql(theirs)) => {
                let errant = own.subtract(theirs);
                Some(
                    match source_uuid {
                        Some(uuid) => {
                            errant.subtract(&errant.only_source(&uuid.to_ascii_lowercase()))
                        }
                        None => errant,
                    }
                    .to_string(),
                )
            }
            _ => None,
        }
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
    fn mariadb_errant_ranges_start_after_what_the_source_holds() {
        let source = MariaDbBinlogState::parse("0-1-100,0-2-150").unwrap();
        let own = MariaDbBinlogState::parse("0-1-105,0-2-150,1-7-3").unwrap();
        assert_eq!(
            own.errant_ranges(&source),
            [
                ErrantRange {
                    domain: 0,
                    server_id: 1,
                    after: Some(100),
                    through: 105
                },
                ErrantRange {
                    domain: 1,
                    server_id: 7,
                    after: None,
                    through: 3
                },
            ]
        );
        assert!(
            source.errant_ranges(&own).is_empty(),
            "behind is not errant"
        );
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
    fn mysql_transactions_of_the_source_itself_are_never_errant() {
        let source = GtidHistory::Mysql(MysqlGtidSet::parse(&format!("{A}:1-5")).unwrap());
        // The source's sixth transaction reached the replica before the source committed
        // it (semi-sync AFTER_SYNC); the replica's own write is errant.
        let replica =
            GtidHistory::Mysql(MysqlGtidSet::parse(&format!("{A}:1-6:tag:1,{B}:1")).unwrap());
        assert_eq!(
            replica.errant_against(&source, Some(&A.to_ascii_uppercase())),
            Some(format!("{B}:1"))
        );
        assert_eq!(
            replica.errant_against(&source, None),
            Some(format!("{A}:6,{A}:tag:1,{B}:1")),
            "without the source's UUID every difference counts"
        );
    }

    #[test]
    fn mysql_set_with_tags() {
        let s = MysqlGtidSet::parse(&format!("{A}:1-3:mytag:1-2")).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-3,{A}:mytag:1-2"));
        assert_eq!(s.transactions(), 5);
        assert_eq!(MysqlGtidSet::parse(&s.to_string()), Ok(s));
        // What MySQL 9.7 prints as gtid_executed after only tagged transactions, and
        // for tagged ones before untagged.
        let only_tagged = MysqlGtidSet::parse(&format!("{A}:blue:1")).unwrap();
        assert_eq!(only_tagged.to_string(), format!("{A}:blue:1"));
        let both = MysqlGtidSet::parse(&format!("{A}:5:tag:1-3:zz:4,{B}:tag:2")).unwrap();
        assert_eq!(both.transactions(), 6);
        assert_eq!(
            both.to_string(),
            format!("{A}:5,{A}:tag:1-3,{A}:zz:4,{B}:tag:2")
        );
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
    fn mariadb_lists_tolerate_spacing_and_refuse_duplicates() {
        let p = MariaDbPosition::parse(" 1-2-5 ,\n0-1-11,").unwrap();
        assert_eq!(p.to_string(), "0-1-11,1-2-5");
        assert_eq!(
            MariaDbBinlogState::parse("0-1-3,0-2-4,0-1-5")
                .unwrap_err()
                .kind(),
            GtidParseErrorKind::DuplicateServer
        );
        let state = MariaDbBinlogState::parse("0-1-3,0-2-4,1-1-5").unwrap();
        assert!(state.errant_against(&state).is_empty());
        for (bad, kind) in [
            ("0-1", GtidParseErrorKind::NotATriple),
            ("0-1-", GtidParseErrorKind::NotANumber),
            ("0-+1-2", GtidParseErrorKind::NotANumber),
            ("0-1-99999999999999999999", GtidParseErrorKind::OutOfRange),
            ("4294967296-1-1", GtidParseErrorKind::OutOfRange),
            ("0-1-2,0-3-4", GtidParseErrorKind::DuplicateDomain),
        ] {
            assert_eq!(
                MariaDbPosition::parse(bad).unwrap_err().kind(),
                kind,
                "{bad}"
            );
        }
    }

    #[test]
    fn mariadb_transaction_counts_saturate() {
        let far = MariaDbPosition::parse(&format!("0-1-{},1-1-{}", u64::MAX, u64::MAX)).unwrap();
        assert_eq!(far.transactions(), u64::MAX);
    }

    #[test]
    fn mysql_intervals_unsorted_overlapping_and_adjacent_are_merged() {
        let s = MysqlGtidSet::parse(&format!("{A}:7-9:1-3:4-6:2-5:11,{A}:13:12")).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-9:11-13"));
        assert_eq!(s.transactions(), 12);
        let upper = MysqlGtidSet::parse(&format!("{}:1", A.to_ascii_uppercase())).unwrap();
        assert_eq!(upper.to_string(), format!("{A}:1"));
    }

    #[test]
    fn mysql_subtraction_and_containment_edges() {
        let p = |t: &str| MysqlGtidSet::parse(&t.replace('A', A).replace('B', B)).unwrap();
        for (a, b, diff) in [
            // One hole across several intervals, holes touching both ends.
            ("A:1-3:5-7:9-11", "A:2-10", "A:1:11"),
            ("A:1-10", "A:1:10", "A:2-9"),
            ("A:1-10", "A:1-10", ""),
            ("A:1-10", "A:11-20", "A:1-10"),
            ("A:5-6", "A:1-4:7-9", "A:5-6"),
            // A hole reaching into the next interval is used for both.
            ("A:1-3:5-8", "A:3-6", "A:1-2:7-8"),
            ("A:1-3,B:1-3", "B:1-3", "A:1-3"),
            ("A:1-3", "B:1-3", "A:1-3"),
            ("", "A:1", ""),
        ] {
            let (a, b) = (p(a), p(b));
            assert_eq!(a.subtract(&b), p(diff), "{a} - {b}");
            assert_eq!(b.contains(&a), p(diff).is_empty(), "{b} contains {a}");
        }
        assert!(p("A:1-10").contains(&p("A:2-3:5:9-10")));
        assert!(!p("A:1-4:6-10").contains(&p("A:4-6")));
        assert!(!p("A:1-10").contains(&p("B:1")));
        assert!(p("A:1").contains(&MysqlGtidSet::default()));
    }

    #[test]
    fn mysql_set_of_many_sources() {
        let uuid = |n: u32| format!("{n:08x}-0000-4000-8000-{n:012x}");
        let text: Vec<String> = (0..1000)
            .rev()
            .map(|n| format!("{}:{}-{}", uuid(n), n + 1, n + 10))
            .collect();
        let s = MysqlGtidSet::parse(&text.join(",\n")).unwrap();
        assert_eq!(s.transactions(), 10_000);
        assert!(s.to_string().starts_with(&format!("{}:1-10,", uuid(0))));
        let half = MysqlGtidSet::parse(&text[..500].join(",")).unwrap();
        assert!(s.contains(&half));
        let rest = s.subtract(&half);
        assert_eq!(rest.transactions(), 5_000);
        assert_eq!(rest.union(&half), s);
        assert_eq!(
            s.only_source(&uuid(7)).to_string(),
            format!("{}:8-17", uuid(7))
        );
    }

    #[test]
    fn mysql_set_refusals_are_typed() {
        use GtidParseErrorKind::*;
        for (bad, kind) in [
            ("nope:1-3".to_string(), NotAUuid),
            ("3e11fa47-71ca-11e1-9e33-c80aa942956z:1".into(), NotAUuid),
            ("3e11fa4771ca11e19e33c80aa9429562abcd:1".into(), NotAUuid),
            (A.to_string(), NoIntervals),
            (format!("{A}:"), BadInterval),
            (format!("{A}::1"), BadInterval),
            (format!("{A}:mytag"), NoIntervals),
            (format!("{A}:mytag:other:1"), NoIntervals),
            (format!("{A}:1-3:mytag"), NoIntervals),
            (format!("{A}:my-tag:1"), BadTag),
            (format!("{A}:{}:1", "t".repeat(33)), BadTag),
            (format!("{A}:3-1"), EmptyInterval),
            (format!("{A}:0"), EmptyInterval),
            (format!("{A}:1-2-3"), BadInterval),
            (format!("{A}:-5"), BadInterval),
            (format!("{A}:1-x"), BadInterval),
            (format!("{A}:9223372036854775808"), OutOfRange),
            (format!("{A}:1-99999999999999999999"), OutOfRange),
        ] {
            let e = MysqlGtidSet::parse(&bad).unwrap_err();
            assert_eq!(e.kind(), kind, "{bad}: {e}");
        }
        let max = MysqlGtidSet::parse(&format!("{A}:1-9223372036854775807")).unwrap();
        assert_eq!(max.transactions(), i64::MAX as u64);
    }

    #[test]
    fn parse_errors_quote_only_the_start_of_a_long_element() {
        let mut text = format!("{A}:1");
        for n in 0..10_000 {
            text.push_str(&format!(":{}", 3 * n + 3));
        }
        text.push_str(":x-y");
        let e = MysqlGtidSet::parse(&text).unwrap_err();
        assert_eq!(e.kind(), GtidParseErrorKind::BadTag);
        assert!(e.to_string().len() < 200, "{e}");
    }

    /// A small deterministic generator: the model test needs varied input, not secrecy.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A random set over transactions 1..=64 of two sources, as text with intervals in
    /// random order (overlapping, adjacent, repeated), and as the model: one bit per
    /// transaction.
    fn random_set(rng: &mut XorShift) -> (String, [u64; 2]) {
        let mut bits = [0u64; 2];
        let mut parts = Vec::new();
        for _ in 0..rng.below(6) {
            let source = rng.below(2) as usize;
            let a = 1 + rng.below(64);
            let b = (a + rng.below(8)).min(64);
            for n in a..=b {
                bits[source] |= 1 << (n - 1);
            }
            let uuid = [A, B][source];
            parts.push(if a == b {
                format!("{uuid}:{a}")
            } else {
                format!("{uuid}:{a}-{b}")
            });
        }
        (parts.join(","), bits)
    }

    fn model_text(bits: [u64; 2]) -> String {
        let mut parts = Vec::new();
        for (source, set) in bits.iter().enumerate() {
            let mut text = String::new();
            let mut n = 1;
            while n <= 64 {
                if set & (1 << (n - 1)) == 0 {
                    n += 1;
                    continue;
                }
                let first = n;
                while n < 64 && set & (1 << n) != 0 {
                    n += 1;
                }
                if first == n {
                    text.push_str(&format!(":{first}"));
                } else {
                    text.push_str(&format!(":{first}-{n}"));
                }
                n += 1;
            }
            if !text.is_empty() {
                parts.push(format!("{}{text}", [A, B][source]));
            }
        }
        parts.join(",")
    }

    #[test]
    fn mysql_set_operations_agree_with_a_bitset_model() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000 {
            let (ta, ma) = random_set(&mut rng);
            let (tb, mb) = random_set(&mut rng);
            let (a, b) = (
                MysqlGtidSet::parse(&ta).unwrap(),
                MysqlGtidSet::parse(&tb).unwrap(),
            );
            assert_eq!(a.to_string(), model_text(ma), "parse {ta}");
            let union = [ma[0] | mb[0], ma[1] | mb[1]];
            assert_eq!(a.union(&b).to_string(), model_text(union), "{ta} + {tb}");
            let diff = [ma[0] & !mb[0], ma[1] & !mb[1]];
            assert_eq!(a.subtract(&b).to_string(), model_text(diff), "{ta} - {tb}");
            assert_eq!(b.contains(&a), diff == [0, 0], "{tb} contains {ta}");
            let count = u64::from(ma[0].count_ones() + ma[1].count_ones());
            assert_eq!(a.transactions(), count, "{ta}");
            assert_eq!(a.is_empty(), count == 0);
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
