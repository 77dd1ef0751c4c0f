//! SIGINT and SIGTERM as a channel, for the commands that clean up when interrupted (`lock`
//! releases its lock, `elect` resigns), as etcdctl does with `signal.Notify`. Other commands
//! keep the default action (the process ends).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{channel, Receiver};

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = [1u8];
        // SAFETY: write(2) is async-signal-safe; the buffer outlives the call.
        unsafe {
            libc::write(fd, b.as_ptr().cast(), 1);
        }
    }
}

/// From now on SIGINT and SIGTERM are caught; each one sends `()` on the returned channel.
/// (Handlers are reset to the default action in executed child processes.)
pub fn catch() -> Receiver<()> {
    let (tx, rx) = channel();
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe(2) fills the two descriptors; sigaction installs a handler that only
    // calls write(2).
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return rx;
        }
        libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(fds[1], libc::F_SETFD, libc::FD_CLOEXEC);
        PIPE_WRITE.store(fds[1], Ordering::Relaxed);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
    let read_fd = fds[0];
    std::thread::spawn(move || loop {
        let mut b = [0u8; 1];
        // SAFETY: reads into a local buffer.
        let n = unsafe { libc::read(read_fd, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            if tx.send(()).is_err() {
                return;
            }
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return;
        }
    });
    rx
}
