//! Socket helpers shared by the load generators (`loadgen`, `soak`).

use mio::net::TcpStream;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A non-blocking connect from `src` (any port), for more than one address's worth of
/// ephemeral ports. `IP_BIND_ADDRESS_NO_PORT` lets the kernel pick the port at connect
/// time, per destination, instead of reserving it at bind time.
pub fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::os::fd::AsRawFd;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to a c_int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(src), 0)))?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
