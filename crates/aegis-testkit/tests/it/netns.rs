use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use aegis_testkit::netns_test;

netns_test! {
    fn only_loopback_is_visible() {
        assert_eq!(aegis_testkit::netns::interfaces(), vec!["lo"]);
    }
}

netns_test! {
    /// mDNS-style multicast to 224.0.0.251:5353 loops back to a member on `lo`.
    fn multicast_works_on_loopback() {
        let group = Ipv4Addr::new(224, 0, 0, 251);
        let rx = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5353)).unwrap();
        rx.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_multicast_loop_v4(true).unwrap();
        tx.send_to(b"aegis", SocketAddrV4::new(group, 5353)).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = rx.recv_from(&mut buf).expect("multicast datagram looped back on lo");
        assert_eq!(&buf[..n], b"aegis");
    }
}

netns_test! {
    /// Every 127.x.y.z address is local, so each simulated device can have its own.
    fn any_loopback_address_binds() {
        for ip in ["127.0.1.1", "127.0.1.250", "127.3.7.9"] {
            let s = UdpSocket::bind((ip, 0)).unwrap();
            assert_eq!(s.local_addr().unwrap().ip().to_string(), ip);
        }
    }
}

netns_test! {
    /// Each isolated test gets its own namespace: a port bound by one is free in the next.
    fn well_known_port_is_free() {
        std::net::TcpListener::bind("127.0.0.1:3000").expect("port 3000 free in a fresh namespace");
    }
}

/// A failing body must fail the outer test (the harness cannot report a false pass).
#[test]
fn a_failing_isolated_body_fails_the_test() {
    let result = std::panic::catch_unwind(|| {
        aegis_testkit::netns::run_isolated("it::netns::deliberately_failing_child", || {});
    });
    assert!(result.is_err(), "a child that fails must fail the parent");
}

netns_test! {
    /// Run only as the child of `a_failing_isolated_body_fails_the_test`.
    #[ignore = "runs only as a child of a_failing_isolated_body_fails_the_test"]
    fn deliberately_failing_child() {
        panic!("deliberate failure");
    }
}
