//! The zones the responder serves: RFC 1035 master files parsed by hickory-proto, held as one
//! map per zone from (owner name, type) to the record set, plus every name that exists.
//!
//! This module owns loading and lookup; it must never build a response (see `answer`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use hickory_proto::rr::{LowerName, Name, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;

/// The zone served when `--zone` is not given: `example.com.`, whose `www` has A, AAAA and TXT
/// records (addresses from the documentation ranges of RFC 5737 and RFC 3849).
pub const BUILT_IN_ZONE: &str = "\
$ORIGIN example.com.
$TTL 3600
@    IN SOA  ns1.example.com. hostmaster.example.com. ( 2026120201 7200 3600 1209600 300 )
@    IN NS   ns1.example.com.
@    IN A    192.0.2.1
ns1  IN A    192.0.2.53
www  IN A    192.0.2.80
www  IN AAAA 2001:db8::80
www  IN TXT  \"served by coreio\"
";

/// One zone: its apex and its records.
pub struct Zone {
    origin: LowerName,
    records: BTreeMap<RrKey, RecordSet>,
    /// Every owner name, and every name between an owner and the apex (empty non-terminals
    /// exist too: a query for one is answered with no data, not with NXDOMAIN).
    names: HashSet<LowerName>,
    /// The apex SOA record, for the authority section of negative answers.
    soa: Option<Record>,
}

/// What a lookup found.
pub enum Lookup<'a> {
    /// Records of the asked type at the name.
    Found(&'a RecordSet),
    /// The name exists in `zone` but has no record of the asked type.
    NoData(&'a Zone),
    /// The name is inside `zone`'s apex but does not exist.
    NxDomain(&'a Zone),
    /// No zone served here contains the name.
    NotServed,
}

impl Zone {
    /// Parses a master file; `path` names it in errors and anchors `$INCLUDE`s.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Zone, String> {
        let what = path.map_or("the built-in zone".to_string(), |p| p.display().to_string());
        let (origin, records) = Parser::new(text, path.map(Path::to_path_buf), None)
            .parse()
            .map_err(|err| format!("parsing {what}: {err}"))?;
        let origin = LowerName::from(origin);
        let mut names = HashSet::new();
        for key in records.keys() {
            let mut name = key.name.clone();
            // The owner and each ancestor down to the apex.
            while origin.zone_of(&name) && names.insert(name.clone()) && name != origin {
                name = name.base_name();
            }
        }
        let soa = records
            .get(&RrKey::new(origin.clone(), RecordType::SOA))
            .and_then(|set| set.records_without_rrsigs().next().cloned());
        if soa.is_none() {
            return Err(format!(
                "{what}: the zone {origin} has no SOA record at its apex"
            ));
        }
        Ok(Zone {
            origin,
            records,
            names,
            soa,
        })
    }

    /// Reads and parses the master file at `path`.
    pub fn load(path: &Path) -> Result<Zone, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("reading {}: {err}", path.display()))?;
        Zone::parse(&text, Some(path))
    }

    /// The zone's apex.
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// The apex SOA record.
    pub fn soa(&self) -> Option<&Record> {
        self.soa.as_ref()
    }
}

/// Every zone the responder serves.
pub struct Zones {
    zones: Vec<Zone>,
}

impl Zones {
    pub fn new(zones: Vec<Zone>) -> Zones {
        Zones { zones }
    }

    /// Looks `name` up for records of `record_type` in the closest enclosing zone.
    pub fn lookup(&self, name: &Name, record_type: RecordType) -> Lookup<'_> {
        let name = LowerName::from(name.clone());
        let Some(zone) = self
            .zones
            .iter()
            .filter(|zone| zone.origin.zone_of(&name))
            .max_by_key(|zone| zone.origin.num_labels())
        else {
            return Lookup::NotServed;
        };
        if !zone.names.contains(&name) {
            return Lookup::NxDomain(zone);
        }
        match zone.records.get(&RrKey::new(name, record_type)) {
            Some(set) if !set.is_empty() => Lookup::Found(set),
            _ => Lookup::NoData(zone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn the_built_in_zone_answers_www_and_knows_what_is_missing() {
        let zones = Zones::new(vec![Zone::parse(BUILT_IN_ZONE, None).unwrap()]);
        let Lookup::Found(set) = zones.lookup(&name("www.example.com."), RecordType::A) else {
            panic!("www.example.com. has no A record");
        };
        assert_eq!(set.records_count(), 1);
        // Case does not matter.
        assert!(matches!(
            zones.lookup(&name("WWW.Example.COM."), RecordType::AAAA),
            Lookup::Found(_)
        ));
        assert!(matches!(
            zones.lookup(&name("www.example.com."), RecordType::MX),
            Lookup::NoData(_)
        ));
        assert!(matches!(
            zones.lookup(&name("nope.example.com."), RecordType::A),
            Lookup::NxDomain(_)
        ));
        assert!(matches!(
            zones.lookup(&name("example.org."), RecordType::A),
            Lookup::NotServed
        ));
    }

    #[test]
    fn empty_non_terminals_exist() {
        let text =
            "$ORIGIN test.\n$TTL 60\n@ IN SOA ns.test. h.test. 1 2 3 4 5\na.b IN A 192.0.2.7\n";
        let zones = Zones::new(vec![Zone::parse(text, None).unwrap()]);
        assert!(matches!(
            zones.lookup(&name("b.test."), RecordType::A),
            Lookup::NoData(_)
        ));
        assert!(matches!(
            zones.lookup(&name("a.b.test."), RecordType::A),
            Lookup::Found(_)
        ));
    }

    #[test]
    fn a_zone_without_soa_or_with_bad_syntax_is_refused_with_its_name() {
        let err = Zone::parse(
            "$ORIGIN test.\nwww 60 IN A 192.0.2.1\n",
            Some(Path::new("t.zone")),
        )
        .err()
        .unwrap();
        assert!(err.contains("t.zone") && err.contains("SOA"), "{err}");
        let err = Zone::parse("$ORIGIN test.\nwww 60 IN A not-an-address\n", None)
            .err()
            .unwrap();
        assert!(err.contains("built-in zone"), "{err}");
    }
}
