//! Stress: two cores exchange a million messages each way through bounded channels, with two
//! senders per direction, and check that nothing is lost, nothing is duplicated and every
//! sender's messages arrive in the order it sent them. Runs on both backends.

#[macro_use]
mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coreio::Builder;
use coreio::mesh::{self, Receiver, Sender};
use coreio::sync::Event;

/// Messages each core sends to the other, split over `SENDERS_PER_CORE` sender tasks.
const MESSAGES_PER_DIRECTION: u64 = 1_000_000;
const SENDERS_PER_CORE: u64 = 2;
/// Small, so senders often find the channel full and wait: the backpressure path is exercised.
const CAPACITY: usize = 64;

/// A message: which sender, and its sequence number in that sender's stream.
type Message = (u64, u64);

both_backends! {
    fn a_million_messages_each_way_arrive_once_and_in_order(backend: Backend) {
        if util::two_or_fewer_cores() < 2 {
            eprintln!("skipped: the stress test needs two CPUs");
            return;
        }
        let rt = Builder::new().backend(backend).cores(2).build().unwrap();
        // Channel i is received on core i and fed by the other core.
        let (senders, receivers): (Vec<Sender<Message>>, Vec<Receiver<Message>>) =
            (0..2).map(|_| mesh::channel(CAPACITY)).unzip();
        let receivers: Vec<_> = receivers.into_iter().map(|rx| std::sync::Mutex::new(Some(rx))).collect();
        let cores = rt.cores().to_vec();
        let left = Arc::new(AtomicUsize::new(2));
        let all_done = Event::new();
        let outputs = rt.run(|core| {
            let me = cores.iter().position(|&c| c == core).unwrap();
            let to_other = senders[1 - me].clone();
            let mut inbox = receivers[me].lock().unwrap().take().unwrap();
            let (left, all_done) = (left.clone(), all_done.clone());
            async move {
                let per_sender = MESSAGES_PER_DIRECTION / SENDERS_PER_CORE;
                let sending: Vec<_> = (0..SENDERS_PER_CORE)
                    .map(|s| {
                        let tx = to_other.clone();
                        let id = me as u64 * SENDERS_PER_CORE + s;
                        coreio::spawn(async move {
                            for seq in 0..per_sender {
                                tx.send((id, seq)).await.expect("the receiver lives");
                            }
                        })
                    })
                    .collect();
                drop(to_other);
                // Next expected sequence number of each sender feeding this core.
                let mut next = vec![0u64; (2 * SENDERS_PER_CORE) as usize];
                let mut received = 0u64;
                while received < MESSAGES_PER_DIRECTION {
                    let (id, seq) = inbox.recv().await.expect("senders live until done");
                    let expected = &mut next[id as usize];
                    assert_eq!(seq, *expected, "sender {id}: lost, duplicated or reordered");
                    assert_ne!(id / SENDERS_PER_CORE, me as u64, "a message came back to its sender's core");
                    *expected += 1;
                    received += 1;
                }
                for task in sending {
                    task.await.unwrap();
                }
                // Nothing more may arrive: every sender of this channel is done.
                if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                    all_done.set();
                }
                all_done.wait().await;
                assert!(inbox.try_recv().is_err(), "an extra message arrived");
                received
            }
        });
        for output in outputs {
            assert_eq!(output.unwrap(), MESSAGES_PER_DIRECTION);
        }
    }
}
