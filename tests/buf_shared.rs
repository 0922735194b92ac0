//! Shared, read-only buffers (`Arc<[u8]>`, `Rc<[u8]>`, `Arc<Vec<u8>>`, `Rc<Vec<u8>>`) written
//! to several streams without a copy per recipient, and, with the `bytes` feature, `Bytes` and
//! `BytesMut`; on both backends.

#[macro_use]
mod util;

use std::rc::Rc;
use std::sync::Arc;

use coreio::buf::IoBuf;
use util::{block_on, pair};

both_backends! {
    fn one_arc_is_broadcast_to_several_streams(backend: Backend) {
        block_on(backend, async {
            let message: Arc<[u8]> = util::pattern(1, 2, 100_000).into();
            let mut pairs = Vec::new();
            for _ in 0..4 {
                pairs.push(pair().await);
            }
            let mut readers = Vec::new();
            for (client, server) in pairs {
                let message = message.clone();
                // Every write goes out of the same allocation.
                readers.push(coreio::spawn(async move {
                    let (res, buf) = client.read_exact(vec![0u8; 100_000]).await;
                    res.unwrap();
                    buf
                }));
                let (res, back) = server.write_all(message).await;
                res.unwrap();
                assert_eq!(back.stable_ptr(), back.as_ptr());
            }
            for reader in readers {
                assert!(reader.await.unwrap()[..] == message[..], "a recipient got other bytes");
            }
            // Every clone was given back and dropped: the allocation is ours alone again.
            assert_eq!(Arc::strong_count(&message), 1);
        });
    }

    fn rc_and_shared_vecs_write_their_bytes(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let rc: Rc<[u8]> = Rc::from(&b"rc slice,"[..]);
            let mut spare = Vec::with_capacity(64);
            spare.extend_from_slice(b"arc vec,");
            let arc_vec = Arc::new(spare);
            // Only the initialised bytes count, never the Vec's spare capacity.
            assert_eq!((arc_vec.bytes_init(), arc_vec.bytes_total()), (8, 8));
            let rc_vec = Rc::new(b"rc vec".to_vec());
            let (res, _) = server.write_all(rc.clone()).await;
            res.unwrap();
            let (res, _) = server.write_all(arc_vec.clone()).await;
            res.unwrap();
            let (res, _) = server.write_all(rc_vec.slice(..)).await;
            res.unwrap();
            let (res, buf) = client.read_exact(vec![0u8; 23]).await;
            res.unwrap();
            assert_eq!(&buf[..], b"rc slice,arc vec,rc vec");
            assert_eq!((Rc::strong_count(&rc), Arc::strong_count(&arc_vec)), (1, 1));
        });
    }
}

#[cfg(feature = "bytes")]
both_backends! {
    fn bytes_and_bytes_mut_write_and_read(backend: Backend) {
        use bytes::{BufMut, Bytes, BytesMut};
        block_on(backend, async {
            let (client, server) = pair().await;
            let shared = Bytes::from_static(b"hello, ");
            let (res, _) = server.write_all(shared.clone()).await;
            res.unwrap();
            let mut owned = BytesMut::with_capacity(16);
            owned.put_slice(b"bytes!");
            let (res, _) = server.write_all(owned).await;
            res.unwrap();
            // A read into a BytesMut fills its capacity from the start and sets its length.
            let (res, buf) = client.read_exact(BytesMut::zeroed(13)).await;
            res.unwrap();
            assert_eq!(&buf[..], b"hello, bytes!");
            let (res, _) = server.write_all(Bytes::from(vec![9u8; 5])).await;
            res.unwrap();
            let (res, buf) = client.read(BytesMut::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(&buf[..], &[9u8; 5]);
            assert!(buf.capacity() >= 64);
            // A slice of a Bytes writes just that range.
            let (res, _) = server.write_all(shared.slice(..5)).await;
            res.unwrap();
            let (res, buf) = client.read_exact(vec![0u8; 5]).await;
            res.unwrap();
            assert_eq!(&buf[..], b"hello");
        });
    }
}
