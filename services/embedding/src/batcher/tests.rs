//! The batcher's queue logic: shares of large requests, whole small ones, answers in order.

use super::*;

fn job(texts: usize, tag: &str) -> (Job, oneshot::Receiver<Reply>) {
    shared_job(texts, usize::MAX, tag)
}

/// A document request as two document threads see it: shares of half.
fn document(texts: usize, tag: &str) -> (Job, oneshot::Receiver<Reply>) {
    shared_job(texts, texts.div_ceil(2), tag)
}

fn shared_job(texts: usize, share: usize, tag: &str) -> (Job, oneshot::Receiver<Reply>) {
    let (reply, rx) = oneshot::channel();
    let job = Job {
        state: JobState::new(texts, reply),
        texts: (0..texts).map(|i| format!("{tag}{i}")).collect(),
        offset: 0,
        share,
    };
    (job, rx)
}

fn sizes(pieces: &[Piece]) -> Vec<usize> {
    pieces.iter().map(|p| p.texts.len()).collect()
}

#[test]
fn a_large_document_request_is_shared_by_every_document_thread() {
    let mut lanes = Lanes::default();
    let (big, _rx) = document(128, "d");
    lanes.documents.push_back(big);
    // Two threads, batches of up to 32: each takes a full batch in turn.
    assert_eq!(sizes(&lanes.take_documents(32)), vec![32]);
    assert_eq!(sizes(&lanes.take_documents(32)), vec![32]);
    // 64 left: still a full batch each.
    let third = lanes.take_documents(32);
    assert_eq!((sizes(&third), third[0].offset), (vec![32], 64));
    assert_eq!(
        lanes.documents.len(),
        1,
        "the request stays queued until all is taken"
    );
    assert_eq!(sizes(&lanes.take_documents(32)), vec![32]);
    assert!(lanes.documents.is_empty());

    // Less than a batch per thread: halves, not one thread taking everything.
    let (small, _rx) = document(20, "s");
    lanes.documents.push_back(small);
    let first = lanes.take_documents(32);
    let second = lanes.take_documents(32);
    assert_eq!((sizes(&first), sizes(&second)), (vec![10], vec![10]));
    assert_eq!((first[0].offset, second[0].offset), (0, 10));
    assert_eq!(second[0].texts[0], "s10");

    // One thread: the whole request up to the batch size, as before.
    let (one, _rx) = shared_job(20, 20, "o");
    lanes.documents.push_back(one);
    assert_eq!(sizes(&lanes.take_documents(32)), vec![20]);
}

#[test]
fn queued_requests_are_taken_whole_while_they_fit() {
    let mut lane = VecDeque::new();
    let mut receivers = Vec::new();
    for i in 0..5 {
        let (j, rx) = job(3, &format!("q{i}-"));
        lane.push_back(j);
        receivers.push(rx);
    }
    // Four whole requests of 3 fill a batch of 12; the fifth is not cut to fit.
    assert_eq!(sizes(&Lanes::take(&mut lane, 12)), vec![3, 3, 3, 3]);
    assert_eq!(lane.len(), 1);
    let (j, _rx) = job(5, "x");
    lane.push_back(j);
    // 3 + 5 > 7: the second request waits for the next batch, uncut.
    assert_eq!(sizes(&Lanes::take(&mut lane, 7)), vec![3]);
    assert_eq!(sizes(&Lanes::take(&mut lane, 7)), vec![5]);
}

#[test]
fn shares_finishing_out_of_order_answer_once_in_request_order() {
    let (mut j, mut rx) = job(4, "t");
    let first = Piece {
        state: j.state.clone(),
        offset: 0,
        texts: j.texts.drain(..2).collect(),
    };
    let second = Piece {
        state: j.state.clone(),
        offset: 2,
        texts: std::mem::take(&mut j.texts),
    };
    second
        .state
        .finish(second.offset, vec![vec![2.0], vec![3.0]]);
    assert!(
        rx.try_recv().is_err(),
        "no answer before every share is done"
    );
    first.state.finish(first.offset, vec![vec![0.0], vec![1.0]]);
    assert_eq!(
        rx.try_recv().unwrap().unwrap(),
        vec![vec![0.0], vec![1.0], vec![2.0], vec![3.0]]
    );

    // A failed share answers at once; the other share is then skipped.
    let (j, mut rx) = job(2, "f");
    j.state.fail("boom".into());
    assert!(j.state.failed());
    assert_eq!(rx.try_recv().unwrap().unwrap_err(), "boom");
}

#[test]
fn batches_respect_count_and_token_budget() {
    let limits = BatchLimits {
        max_batch: 4,
        max_batch_tokens: 100,
        max_tokens: 256,
    };
    // 38 bytes -> 11 tokens; 400 bytes -> 102 tokens; 4000 bytes -> capped at 256.
    let short = "x".repeat(38);
    let long = "x".repeat(400);
    let huge = "x".repeat(4000);
    let mut items: Vec<&str> = vec![short.as_str(); 6];
    items.extend([long.as_str(), long.as_str(), huge.as_str()]);
    let sizes: Vec<usize> = limits
        .split(&items, |t: &&str| *t)
        .iter()
        .map(|b| b.len())
        .collect();
    // Six short ones: count limit 4, then 2; each long one alone (over budget even alone).
    assert_eq!(sizes, vec![4, 2, 1, 1, 1]);
    assert_eq!(sizes.iter().sum::<usize>(), items.len());
    assert!(limits.split(&Vec::<&str>::new(), |t: &&str| *t).is_empty());
}

#[test]
fn a_pass_is_lone_only_when_nothing_else_waits_and_the_other_threads_idle() {
    let mut lanes = Lanes {
        idle_document_threads: 1,
        ..Lanes::default()
    };
    // Two document threads: this one took the work, the other waits.
    assert!(lanes.lone(2));
    // Three threads, one of the others busy: not lone.
    assert!(!lanes.lone(3));
    // More documents queued (a share of a large request): the other thread will take them.
    lanes.documents.push_back(document(4, "d").0);
    assert!(!lanes.lone(2));
    lanes.documents.clear();
    // A query waiting: the cores are not ours alone.
    lanes.queries.push_back(job(1, "q").0);
    assert!(!lanes.lone(2));
    lanes.queries.clear();
    // The other thread busy.
    lanes.idle_document_threads = 0;
    assert!(!lanes.lone(2));
    // One document thread only: always lone.
    assert!(lanes.lone(1));
}
