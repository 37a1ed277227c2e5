//! Readiness for supervisors: `sd_notify(3)`'s protocol without libsystemd. Where
//! `NOTIFY_SOCKET` is set (systemd `Type=notify`, or any supervisor speaking the protocol), a
//! holder sends `READY=1` once it serves, so dependants (`serve` reading from the mount) start
//! only then. Nothing happens where it is unset.

use std::os::unix::net::UnixDatagram;

use super::env::Env;

/// Sends `READY=1` and a one-line status; a failure is logged, never fatal (the service works,
/// only its supervisor is not told).
pub(crate) fn ready(env: &Env, status: &str) {
    let Some(path) = env.get("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else { return };
    let message =
        format!("READY=1\nSTATUS={}\nMAINPID={}\n", status.replace('\n', " "), std::process::id());
    if let Err(e) = send(path, message.as_bytes()) {
        tracing::warn!(socket = path, error = %e, "cannot notify the supervisor");
    }
}

/// One datagram to a path, or to an abstract socket (`@name`).
fn send(path: &str, message: &[u8]) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(message, &addr)?;
    } else {
        socket.send_to(message, path)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_datagram_socket() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let env: Env =
            serde_json::from_value(serde_json::json!({ "NOTIFY_SOCKET": path })).expect("env");
        ready(&env, "mounted /models");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("READY=1\nSTATUS=mounted /models\n"), "{got}");
    }
}
