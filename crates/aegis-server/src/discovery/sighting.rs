//! What one resolved announcement means: a [`Sighting`] of a device (its TXT record parsed and
//! checked by aegis-protocol), or a [`RejectedSighting`] saying why it cannot be one. Pure: no
//! sockets, so every malformed variant is tested without mDNS.

use std::net::Ipv4Addr;

use aegis_protocol::TxtRecord;

use crate::devices::RejectedSighting;
use crate::time::Timestamp;

/// Most TXT items kept on a rejected sighting (what an operator needs to see the problem).
const MAX_KEPT_ITEMS: usize = 32;
/// Longest key or value kept on a rejected sighting, in bytes.
const MAX_KEPT_LEN: usize = 255;

/// A device announcement that parsed: who it is and where its control endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// mDNS instance name (the label before `._aegis-ota._tcp.local.`).
    pub instance: String,
    /// The address to reach the device at: the A record that matches TXT `ip`, else the first
    /// A record, else TXT `ip`.
    pub addr: Ipv4Addr,
    /// SRV port of the control endpoint.
    pub port: u16,
    pub txt: TxtRecord,
    pub at: Timestamp,
}

/// What discovery reports to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A device announced itself (first time, or with changed data).
    Sighting(Sighting),
    /// An announcement that is not a valid device record.
    Rejected(RejectedSighting),
    /// The instance said goodbye (TTL 0), or stopped answering a re-query.
    Gone { instance: String, at: Timestamp },
}

/// The instance label of a full service name: `dev-1._aegis-ota._tcp.local.` → `dev-1`.
pub fn instance_name(fullname: &str) -> String {
    fullname
        .strip_suffix(aegis_protocol::SERVICE_TYPE)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(fullname)
        .to_owned()
}

/// Turns one resolved service into a sighting or a rejection.
///
/// `addrs` are the A records seen for the instance's host; `pairs` the TXT items as received.
pub fn classify(
    instance: &str,
    addrs: &[Ipv4Addr],
    port: u16,
    pairs: &[(String, String)],
    at: Timestamp,
) -> DiscoveryEvent {
    let mut sorted = addrs.to_vec();
    sorted.sort_unstable();
    let reject = |reason: String| {
        DiscoveryEvent::Rejected(RejectedSighting {
            at,
            instance: instance.to_owned(),
            addr: sorted.first().map(|a| format!("{a}:{port}")),
            reason,
            txt: kept_items(pairs),
        })
    };
    let txt = match TxtRecord::from_pairs(pairs.iter().map(|(k, v)| (k, v))) {
        Ok(txt) => txt,
        Err(e) => return reject(format!("{e}.")),
    };
    if port == 0 {
        return reject(
            "the announcement's SRV port is 0, so its control endpoint cannot be reached.".into(),
        );
    }
    let addr = if sorted.contains(&txt.ip) {
        txt.ip
    } else {
        sorted.first().copied().unwrap_or(txt.ip)
    };
    DiscoveryEvent::Sighting(Sighting {
        instance: instance.to_owned(),
        addr,
        port,
        txt,
        at,
    })
}

/// The TXT items, bounded in count and length, for the rejected-sighting record.
fn kept_items(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .take(MAX_KEPT_ITEMS)
        .map(|(k, v)| (truncate(k), truncate(v)))
        .collect()
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_KEPT_LEN {
        return s.to_owned();
    }
    let mut end = MAX_KEPT_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn valid() -> Vec<(String, String)> {
        pairs(&[
            ("id", "240ac4123456"),
            ("ver", "1.0.0"),
            ("host", "dev-1"),
            ("ip", "127.0.1.5"),
            ("proto", "1"),
        ])
    }

    fn reason(ev: DiscoveryEvent) -> String {
        match ev {
            DiscoveryEvent::Rejected(r) => r.reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_record_is_a_sighting_at_the_matching_a_record() {
        let a = ["127.0.1.9".parse().unwrap(), "127.0.1.5".parse().unwrap()];
        let DiscoveryEvent::Sighting(s) = classify("dev-1", &a, 80, &valid(), Timestamp(7)) else {
            panic!("not a sighting")
        };
        assert_eq!(s.addr, Ipv4Addr::new(127, 0, 1, 5));
        assert_eq!(
            (s.port, s.at, s.txt.id.as_str()),
            (80, Timestamp(7), "240ac4123456")
        );
    }

    #[test]
    fn without_a_matching_a_record_the_lowest_a_record_wins_then_txt_ip() {
        let a = ["127.0.1.9".parse().unwrap(), "127.0.1.7".parse().unwrap()];
        let DiscoveryEvent::Sighting(s) = classify("d", &a, 80, &valid(), Timestamp(0)) else {
            panic!()
        };
        assert_eq!(s.addr, Ipv4Addr::new(127, 0, 1, 7));
        let DiscoveryEvent::Sighting(s) = classify("d", &[], 80, &valid(), Timestamp(0)) else {
            panic!()
        };
        assert_eq!(s.addr, Ipv4Addr::new(127, 0, 1, 5));
    }

    #[test]
    fn malformed_records_are_rejected_with_the_parse_error() {
        let mut missing_id = valid();
        missing_id.remove(0);
        assert!(reason(classify("d", &[], 80, &missing_id, Timestamp(0))).contains("\"id\""));

        let mut bad_id = valid();
        bad_id[0].1 = "XYZ".into();
        let r = reason(classify("d", &[], 80, &bad_id, Timestamp(0)));
        assert!(r.contains("not a device id"), "{r}");

        let mut bad_ip = valid();
        bad_ip[3].1 = "300.1.1.1".into();
        assert!(reason(classify("d", &[], 80, &bad_ip, Timestamp(0))).contains("IPv4"));

        let mut long_item = valid();
        long_item.push(("proj".into(), "p".repeat(300)));
        assert!(reason(classify("d", &[], 80, &long_item, Timestamp(0))).contains("255"));

        let mut too_big = valid();
        for i in 0..10 {
            too_big.push((format!("x{i}"), "v".repeat(200)));
        }
        assert!(reason(classify("d", &[], 80, &too_big, Timestamp(0))).contains("1300"));

        assert!(reason(classify("d", &[], 0, &valid(), Timestamp(0))).contains("port"));
    }

    #[test]
    fn rejections_keep_a_bounded_copy_of_the_items() {
        let mut many = valid();
        many.remove(0);
        for i in 0..100 {
            many.push((format!("k{i}"), "é".repeat(200)));
        }
        let addr = ["127.0.1.5".parse().unwrap()];
        let DiscoveryEvent::Rejected(r) = classify("d", &addr, 80, &many, Timestamp(3)) else {
            panic!()
        };
        assert_eq!(r.txt.len(), MAX_KEPT_ITEMS);
        assert!(
            r.txt
                .iter()
                .all(|(_, v)| v.len() <= MAX_KEPT_LEN + '…'.len_utf8())
        );
        assert_eq!(r.addr.as_deref(), Some("127.0.1.5:80"));
        assert_eq!((r.instance.as_str(), r.at), ("d", Timestamp(3)));
    }

    #[test]
    fn instance_names_drop_the_service_type() {
        assert_eq!(instance_name("dev-1._aegis-ota._tcp.local."), "dev-1");
        assert_eq!(instance_name("odd"), "odd");
    }
}
