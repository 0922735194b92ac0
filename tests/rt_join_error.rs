//! `JoinError` into `io::Error` and back: `?` in an `io::Result` function, the kind and the
//! message, and the panic payload kept.

use std::io;

fn join_panic(msg: &'static str) -> coreio::JoinError {
    coreio::block_on(async move { coreio::spawn(async move { panic!("{msg}") }).await })
        .unwrap()
        .unwrap_err()
}

#[test]
fn a_panic_converts_to_io_error_and_back_with_its_payload() {
    fn via_question_mark(err: coreio::JoinError) -> io::Result<()> {
        Err(err)?
    }
    let io_err = via_question_mark(join_panic("boom 7")).unwrap_err();
    assert_eq!(io_err.kind(), io::ErrorKind::Other);
    assert_eq!(io_err.to_string(), "task panicked: boom 7");
    // The io::Error crosses threads, as any io::Error must.
    let io_err = std::thread::spawn(move || io_err).join().unwrap();
    let back = coreio::JoinError::from_io_error(io_err).expect("a JoinError inside");
    assert!(back.is_panic());
    assert_eq!(back.panic_message(), Some("boom 7"));
    let payload = back.into_panic().unwrap();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("boom 7")
    );
}

#[test]
fn a_cancellation_converts_and_other_io_errors_are_given_back() {
    let err = coreio::block_on(async {
        let task = coreio::spawn(std::future::pending::<()>());
        task.abort();
        task.await.unwrap_err()
    })
    .unwrap();
    let io_err = io::Error::from(err);
    assert_eq!(io_err.kind(), io::ErrorKind::Other);
    assert_eq!(io_err.to_string(), "task was cancelled");
    assert!(
        coreio::JoinError::from_io_error(io_err)
            .unwrap()
            .is_cancelled()
    );

    let other = io::Error::new(io::ErrorKind::NotFound, "no such thing");
    let other = coreio::JoinError::from_io_error(other).unwrap_err();
    assert_eq!(
        (other.kind(), other.to_string()),
        (io::ErrorKind::NotFound, "no such thing".into())
    );
    let bare = coreio::JoinError::from_io_error(io::ErrorKind::Other.into()).unwrap_err();
    assert_eq!(bare.kind(), io::ErrorKind::Other);
}
