//! One query in, at most one response out: the responder's whole protocol, free of I/O so the
//! coreio server, the tokio peer in `benches/peers` and the tests run exactly the same code.
//!
//! - Anything shorter than a DNS header, and any *response* (QR set), is dropped without a
//!   reply: answering responses would let two servers bounce garbage at each other forever.
//! - A header followed by bytes hickory-proto cannot decode gets FORMERR, built from the
//!   header alone; so does a query with other than one question.
//! - Opcodes other than QUERY get NOTIMP; classes other than IN get REFUSED.
//! - A name in a zone served here gets its records (AA set), or no data with the zone's SOA in
//!   the authority section, or NXDOMAIN with the SOA. A name in no zone served here also gets
//!   NXDOMAIN, without AA or SOA (issue [7] asks for NXDOMAIN there; many authoritative servers
//!   answer REFUSED instead).
//! - Responses fit the client's UDP limit: 512 bytes without EDNS, the client's advertised
//!   size (capped at 1232, the DNS flag day 2020 figure) with it; a response that does not fit
//!   is sent truncated (TC set, question only) so the client retries over TCP.
//!
//! This module owns that policy; it must never panic on any input (the garbage-flood test and
//! the unit tests below feed it random bytes).

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;

use crate::zone::{Lookup, Zones};

/// Length of the fixed DNS header (RFC 1035, 4.1.1).
pub const HEADER_LEN: usize = 12;

/// The largest response to a query without EDNS (RFC 1035, 4.2.1).
const PLAIN_UDP_LIMIT: usize = 512;

/// The largest UDP response sent to an EDNS client, whatever it advertises.
const EDNS_UDP_LIMIT: u16 = 1232;

/// What became of one datagram, for the server's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Records returned.
    Answered,
    /// The name exists, the type does not (NOERROR, empty answer).
    NoData,
    /// The name does not exist here.
    NxDomain,
    /// Malformed: FORMERR.
    FormErr,
    /// Not a standard query, or not class IN: NOTIMP or REFUSED.
    Rejected,
    /// Too short to answer, or a response: no reply.
    Dropped,
}

/// The response to the datagram `query`, if one is due.
pub fn respond(zones: &Zones, query: &[u8]) -> (Outcome, Option<Vec<u8>>) {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
        return (Outcome::Dropped, None);
    }
    let request = match Message::from_vec(query) {
        Ok(request) => request,
        Err(_) => return (Outcome::FormErr, Some(header_only_error(query))),
    };
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata = Metadata::response_from_request(&request.metadata);
    let limit = match &request.edns {
        Some(edns) => {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_UDP_LIMIT);
            response.set_edns(ours);
            usize::from(
                edns.max_payload()
                    .clamp(PLAIN_UDP_LIMIT as u16, EDNS_UDP_LIMIT),
            )
        }
        None => PLAIN_UDP_LIMIT,
    };
    let outcome = fill(zones, &request, &mut response);
    match encode(&response, limit) {
        Some(bytes) => (outcome, Some(bytes)),
        // Encoding a message built from decoded parts cannot fail in practice; if it ever
        // does, the client gets the header-only answer it would get for a bad query.
        None => (Outcome::FormErr, Some(header_only_error(query))),
    }
}

/// Fills `response` for `request`; returns the outcome.
fn fill(zones: &Zones, request: &Message, response: &mut Message) -> Outcome {
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return Outcome::Rejected;
    }
    let [question] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return Outcome::FormErr;
    };
    response.add_query(question.clone());
    if question.query_class() != DNSClass::IN {
        response.metadata.response_code = ResponseCode::Refused;
        return Outcome::Rejected;
    }
    match zones.lookup(question.name(), question.query_type()) {
        Lookup::Found(set) => {
            response.metadata.authoritative = true;
            response.add_answers(set.records_without_rrsigs().cloned());
            Outcome::Answered
        }
        Lookup::NoData(zone) => {
            response.metadata.authoritative = true;
            response.add_authorities(zone.soa().cloned());
            Outcome::NoData
        }
        Lookup::NxDomain(zone) => {
            response.metadata.authoritative = true;
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authorities(zone.soa().cloned());
            Outcome::NxDomain
        }
        Lookup::NotServed => {
            response.metadata.response_code = ResponseCode::NXDomain;
            Outcome::NxDomain
        }
    }
}

/// The response's wire form, truncated (TC, question only) if it exceeds `limit` bytes.
fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    response.truncate().to_vec().ok()
}

/// FORMERR for a datagram whose header is all that can be read: the query's id, opcode and RD
/// bit, QR set, every count zero.
fn header_only_error(query: &[u8]) -> Vec<u8> {
    let mut header = vec![0u8; HEADER_LEN];
    header[..2].copy_from_slice(&query[..2]);
    // QR, then the query's opcode (bits 3-6) and RD (bit 0) of the third byte.
    header[2] = 0x80 | (query[2] & 0x79);
    header[3] = ResponseCode::FormErr.low();
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{BUILT_IN_ZONE, Zone};
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RData, RecordType};

    fn zones() -> Zones {
        Zones::new(vec![Zone::parse(BUILT_IN_ZONE, None).unwrap()])
    }

    fn query(name: &str, record_type: RecordType) -> Vec<u8> {
        let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        message.to_vec().unwrap()
    }

    fn decode(bytes: &[u8]) -> Message {
        Message::from_vec(bytes).unwrap()
    }

    #[test]
    fn www_gets_its_address_with_the_id_and_rd_copied() {
        let (outcome, bytes) = respond(&zones(), &query("www.example.com.", RecordType::A));
        assert_eq!(outcome, Outcome::Answered);
        let response = decode(&bytes.unwrap());
        assert_eq!(response.metadata.id, 0x1234);
        assert!(response.metadata.authoritative && response.metadata.recursion_desired);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        let [answer] = response.answers.as_slice() else {
            panic!("expected one answer: {:?}", response.answers);
        };
        assert_eq!(answer.data, RData::A("192.0.2.80".parse().unwrap()));
    }

    #[test]
    fn missing_names_types_and_zones_get_negative_answers() {
        let zones = zones();
        let (outcome, bytes) = respond(&zones, &query("nope.example.com.", RecordType::A));
        assert_eq!(outcome, Outcome::NxDomain);
        let response = decode(&bytes.unwrap());
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            response.authorities.len(),
            1,
            "no SOA in the authority section"
        );
        let (outcome, bytes) = respond(&zones, &query("www.example.com.", RecordType::MX));
        assert_eq!(outcome, Outcome::NoData);
        let response = decode(&bytes.unwrap());
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.answers.is_empty());
        let (outcome, bytes) = respond(&zones, &query("www.example.org.", RecordType::A));
        assert_eq!(outcome, Outcome::NxDomain);
        assert!(!decode(&bytes.unwrap()).metadata.authoritative);
    }

    #[test]
    fn garbage_after_a_header_is_formerr_and_short_or_response_datagrams_are_dropped() {
        let zones = zones();
        let mut bad = query("www.example.com.", RecordType::A);
        bad.truncate(HEADER_LEN + 3);
        let (outcome, bytes) = respond(&zones, &bad);
        assert_eq!(outcome, Outcome::FormErr);
        let bytes = bytes.unwrap();
        assert_eq!(&bytes[..2], &[0x12, 0x34]);
        assert_eq!(bytes[3] & 0x0f, 1, "not FORMERR");
        assert_eq!(respond(&zones, &[0u8; 5]), (Outcome::Dropped, None));
        let mut response = query("www.example.com.", RecordType::A);
        response[2] |= 0x80;
        assert_eq!(respond(&zones, &response), (Outcome::Dropped, None));
    }

    #[test]
    fn random_bytes_never_panic() {
        let zones = zones();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = respond(&zones, &bytes);
            // The same bytes behind a valid query header.
            let mut framed = query("www.example.com.", RecordType::A)[..HEADER_LEN].to_vec();
            framed[5] = (len % 3) as u8;
            framed.extend_from_slice(&bytes);
            let _ = respond(&zones, &framed);
        }
    }

    #[test]
    fn a_response_over_the_clients_limit_is_truncated() {
        let mut text = BUILT_IN_ZONE.to_string();
        for i in 0..40 {
            text.push_str(&format!("big IN TXT \"{i:02} {}\"\n", "x".repeat(40)));
        }
        let zones = Zones::new(vec![Zone::parse(&text, None).unwrap()]);
        let (_, bytes) = respond(&zones, &query("big.example.com.", RecordType::TXT));
        let bytes = bytes.unwrap();
        assert!(bytes.len() <= PLAIN_UDP_LIMIT);
        let response = decode(&bytes);
        assert!(response.metadata.truncation && response.answers.is_empty());
    }
}
