//! The addresses a device is told to use: where to download the image and where to report.
//! They must be reachable from the device: `--public-url` when given; else the device
//! listener's own address; else, when it listens on every address (0.0.0.0), the local address
//! the OS would use to reach that device (found by connecting a UDP socket, which sends
//! nothing).

use std::net::{IpAddr, SocketAddr, UdpSocket};

#[derive(Debug, Clone)]
pub struct DeviceUrls {
    /// Base URL that overrides everything, e.g. `http://10.0.0.5:3001`.
    public_url: Option<String>,
    /// Where the device listener is bound.
    listener: SocketAddr,
}

impl DeviceUrls {
    pub fn new(public_url: Option<String>, listener: SocketAddr) -> Self {
        Self {
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            listener,
        }
    }

    /// `http://host:port` the device at `device` can reach this server's device listener at.
    pub fn base_for(&self, device: IpAddr) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        let ip = if self.listener.ip().is_unspecified() {
            route_source(device).unwrap_or(self.listener.ip())
        } else {
            self.listener.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.listener.port()))
    }

    pub fn firmware_url(&self, device: IpAddr, sha256: &str) -> String {
        format!("{}/fw/{sha256}.bin", self.base_for(device))
    }

    pub fn report_url(&self, device: IpAddr) -> String {
        format!("{}/api/v1/report", self.base_for(device))
    }
}

/// The local address on the route to `dest` (no packet is sent).
fn route_source(dest: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match dest {
        IpAddr::V4(_) => "0.0.0.0:0".parse().ok()?,
        IpAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect(SocketAddr::new(dest, 9)).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_wins_and_loses_its_trailing_slash() {
        let u = DeviceUrls::new(
            Some("http://ota.lan:8080/".into()),
            "0.0.0.0:3001".parse().unwrap(),
        );
        assert_eq!(
            u.firmware_url("10.0.0.9".parse().unwrap(), "ab"),
            "http://ota.lan:8080/fw/ab.bin"
        );
    }

    #[test]
    fn a_specific_listener_address_is_used_as_is() {
        let u = DeviceUrls::new(None, "192.168.1.5:3001".parse().unwrap());
        assert_eq!(
            u.report_url("192.168.1.77".parse().unwrap()),
            "http://192.168.1.5:3001/api/v1/report"
        );
    }

    #[test]
    fn unspecified_listener_uses_the_route_to_loopback_devices() {
        // Loopback routes exist on every machine, so this needs no network namespace.
        let u = DeviceUrls::new(None, "0.0.0.0:3001".parse().unwrap());
        assert_eq!(
            u.base_for("127.0.0.1".parse().unwrap()),
            "http://127.0.0.1:3001"
        );
    }
}
