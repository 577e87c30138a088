//! The address a node tells peers and clients to reach it at (gossip,
//! handshakes, adverts, `CLUSTER NODES`, `HELLO`, client discovery): the
//! announced one (`cluster-announce-ip`/`-port`, `--announce-addr`), else
//! the bound one, else, for a node bound to 0.0.0.0 or `::`, an address of
//! this host that others can route to. Never an unspecified address: a
//! peer told 0.0.0.0 would dial itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Where the announced IP came from, for the start's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `cluster-announce-ip`.
    Configured,
    /// The bound address, which names this host.
    Bound,
    /// Bound to every address: the default route's interface, or the
    /// first interface beyond loopback.
    Detected,
    /// Bound to every address and nothing found: loopback, which only
    /// nodes on this host can reach (logged as a warning).
    Fallback,
}

/// The IP to announce. `configured` is `cluster-announce-ip` resolved;
/// `detect` finds a routable address of this host (given whether the
/// bound address is IPv6); it is only asked when the node is bound to
/// every address and none is configured.
pub fn choose_ip(
    bound: IpAddr,
    configured: Option<IpAddr>,
    detect: impl FnOnce(bool) -> Option<IpAddr>,
) -> (IpAddr, Source) {
    if let Some(ip) = configured {
        return (ip, Source::Configured);
    }
    if !bound.is_unspecified() {
        return (bound, Source::Bound);
    }
    match detect(bound.is_ipv6()).filter(routable) {
        Some(ip) => (ip, Source::Detected),
        None if bound.is_ipv6() => (Ipv6Addr::LOCALHOST.into(), Source::Fallback),
        None => (Ipv4Addr::LOCALHOST.into(), Source::Fallback),
    }
}

/// Whether another host could reach this node at `ip` (as far as this
/// host can tell): not 0.0.0.0, loopback, multicast or link-local.
pub fn routable(ip: &IpAddr) -> bool {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || link_local)
}

/// This host's address for others: the source address of the default
/// route, else the first interface address beyond loopback. An IPv6
/// node (bound to `::`, which takes IPv4 too) tries IPv6 first.
pub fn detect(v6: bool) -> Option<IpAddr> {
    // Documentation addresses (RFC 5737, RFC 3849): only the route to them
    // is looked up, no packet goes there.
    let v4_target = SocketAddr::from(([192, 0, 2, 1], 9));
    let v6_target = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9));
    let targets: &[SocketAddr] = if v6 {
        &[v6_target, v4_target]
    } else {
        &[v4_target]
    };
    targets
        .iter()
        .find_map(|t| route_source(*t))
        .or_else(|| pick_interface(&interface_addrs(), v6))
}

/// The source address the kernel picks for datagrams to `target`:
/// `connect` on a UDP socket looks up the route and sends nothing.
fn route_source(target: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    routable(&ip).then_some(ip)
}

/// The first routable address among an interface list, the node's family
/// first (an IPv6 node also takes an IPv4 one; an IPv4 node only IPv4).
pub fn pick_interface(addrs: &[IpAddr], v6: bool) -> Option<IpAddr> {
    let of = |want_v6: bool| {
        addrs
            .iter()
            .copied()
            .find(|ip| ip.is_ipv6() == want_v6 && routable(ip))
    };
    if v6 {
        of(true).or_else(|| of(false))
    } else {
        of(false)
    }
}

/// Whether `ip` is an address of one of this host's interfaces.
pub fn is_this_host(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !ip.is_unspecified() && interface_addrs().contains(&ip)
}

/// The addresses of the interfaces that are up, in the kernel's order.
fn interface_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list and points `head` at it; it is
    // only read below, and freed once with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs made, not freed yet.
        let ifa = unsafe { &*cur };
        let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
        if up && !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family
            // says which sockaddr_* it is, allocated with the right size.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn configured_beats_bound_and_bound_beats_detection() {
        let never = |_| -> Option<IpAddr> { panic!("not asked") };
        assert_eq!(
            choose_ip(ip("0.0.0.0"), Some(ip("10.1.1.1")), never),
            (ip("10.1.1.1"), Source::Configured)
        );
        assert_eq!(
            choose_ip(ip("10.2.2.2"), None, never),
            (ip("10.2.2.2"), Source::Bound)
        );
        assert_eq!(
            choose_ip(ip("127.0.0.1"), None, never),
            (ip("127.0.0.1"), Source::Bound)
        );
    }

    #[test]
    fn an_unspecified_bind_announces_a_found_address_or_loopback() {
        assert_eq!(
            choose_ip(ip("0.0.0.0"), None, |v6| {
                assert!(!v6);
                Some(ip("192.168.1.20"))
            }),
            (ip("192.168.1.20"), Source::Detected)
        );
        assert_eq!(
            choose_ip(ip("::"), None, |v6| {
                assert!(v6);
                Some(ip("fd00::20"))
            }),
            (ip("fd00::20"), Source::Detected)
        );
        // Nothing found, or nothing routable: loopback, never 0.0.0.0.
        for found in [None, Some(ip("0.0.0.0")), Some(ip("127.0.0.1"))] {
            assert_eq!(
                choose_ip(ip("0.0.0.0"), None, |_| found),
                (ip("127.0.0.1"), Source::Fallback)
            );
        }
        assert_eq!(
            choose_ip(ip("::"), None, |_| None),
            (ip("::1"), Source::Fallback)
        );
    }

    #[test]
    fn interfaces_skip_loopback_and_link_local_and_keep_the_family() {
        let list = [
            ip("127.0.0.1"),
            ip("::1"),
            ip("169.254.3.4"),
            ip("fe80::1"),
            ip("fd00::7"),
            ip("10.0.0.7"),
            ip("10.0.0.8"),
        ];
        assert_eq!(pick_interface(&list, false), Some(ip("10.0.0.7")));
        assert_eq!(pick_interface(&list, true), Some(ip("fd00::7")));
        assert_eq!(
            pick_interface(&[ip("::1"), ip("10.0.0.9")], true),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(
            pick_interface(&[ip("127.0.0.1"), ip("fd00::1")], false),
            None
        );
        assert_eq!(pick_interface(&[], false), None);
    }

    #[test]
    fn loopback_is_this_host_and_a_documentation_address_is_not() {
        assert!(is_this_host(ip("127.0.0.1")));
        assert!(is_this_host(ip("::ffff:127.0.0.1")));
        assert!(!is_this_host(ip("192.0.2.77")));
        assert!(!is_this_host(ip("0.0.0.0")));
    }

    #[test]
    fn detection_never_returns_what_others_cannot_reach() {
        // Whatever this host has: the answer, if any, is routable.
        for v6 in [false, true] {
            if let Some(found) = detect(v6) {
                assert!(routable(&found), "{found}");
            }
        }
    }
}
