//! The check pool and the authenticator: bounded concurrency, the queue deadline, and the
//! throttle's reservations seen from a real (tokio) caller.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use dakiya_auth::{AuthOutcome, Authenticator, CheckPool, PoolError, Service, Throttle, UserStore};

const MS: Duration = Duration::from_millis(1);

/// Twelve jobs on a pool of two: each notes how many run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_workers_jobs_run_at_once() {
    let pool = Arc::new(CheckPool::new(2, Duration::from_secs(30)).unwrap());
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(20 * MS);
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
                .await
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap().unwrap());
    }
    assert_eq!(done, (0..12).collect::<Vec<_>>());
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

/// A job that holds the pool's only worker until `release` is sent to.
fn blocker(pool: &Arc<CheckPool>) -> (mpsc::Sender<()>, tokio::task::JoinHandle<Result<(), PoolError>>) {
    let (release, wait) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let pool2 = pool.clone();
    let task = tokio::spawn(async move {
        pool2
            .run(move || {
                started_tx.send(()).unwrap();
                let _ = wait.recv();
            })
            .await
    });
    started.recv_timeout(Duration::from_secs(10)).expect("the blocking job started");
    (release, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_answers_busy_after_the_queue_timeout() {
    let pool = Arc::new(CheckPool::new(1, 100 * MS).unwrap());
    let (release, first) = blocker(&pool);
    assert_eq!(pool.run(|| ()).await, Err(PoolError::Busy(100 * MS)));
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(pool.run(|| 7).await, Ok(7));
}

#[tokio::test]
async fn a_panicking_job_does_not_shrink_the_pool() {
    let pool = CheckPool::new(1, Duration::from_secs(5)).unwrap();
    let out: Result<(), PoolError> = pool.run(|| panic!("job panics")).await;
    assert_eq!(out, Err(PoolError::Failed));
    assert_eq!(pool.run(|| 1).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_gives_the_worker_back_when_the_job_ends() {
    let pool = Arc::new(CheckPool::new(1, Duration::from_secs(5)).unwrap());
    let (release, first) = blocker(&pool);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    // The job still holds the worker after its caller is gone...
    let pool2 = pool.clone();
    let waiting = tokio::spawn(async move { pool2.run(|| 2).await });
    tokio::time::sleep(50 * MS).await;
    assert!(!waiting.is_finished());
    // ...until it ends.
    release.send(()).unwrap();
    assert_eq!(waiting.await.unwrap(), Ok(2));
}

#[test]
fn worker_count_is_at_least_one() {
    assert_eq!(CheckPool::new(0, MS).unwrap().workers(), 1);
    assert_eq!(CheckPool::new(3, MS).unwrap().workers(), 3);
}

fn store_with_alice() -> (tempfile::TempDir, Arc<UserStore>) {
    let dir = tempfile::tempdir().unwrap();
    let users = UserStore::open(&dir.path().join("users")).unwrap();
    users.add("alice@example.org", "right").unwrap();
    (dir, Arc::new(users))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Twenty attempts at once from one address: five are checked, fifteen are locked out
/// without a check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_get_max_failures_checks() {
    let (_dir, users) = store_with_alice();
    let throttle = Throttle::new(5, Duration::from_secs(600), Duration::from_secs(900), MS);
    let auth = Arc::new(Authenticator::new(users, throttle, CheckPool::new(2, Duration::from_secs(30)).unwrap()));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move {
                auth.authenticate(Service::Smtp, ip("192.0.2.1"), "alice@example.org", format!("guess {i}")).await
            })
        })
        .collect();
    let (mut rejected, mut locked) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            AuthOutcome::Rejected => rejected += 1,
            AuthOutcome::Locked { .. } => locked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rejected, locked), (5, 15));
    // Another address is not affected.
    let other = auth.authenticate(Service::Smtp, ip("192.0.2.2"), "alice@example.org", "right".into()).await;
    assert!(matches!(other, AuthOutcome::Accepted), "{other:?}");
}

/// An attempt that never got a worker was not checked, so it does not count: with
/// `max_failures = 1`, counting it would lock the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_answer_is_not_counted() {
    let (_dir, users) = store_with_alice();
    let throttle = Throttle::new(1, Duration::from_secs(600), Duration::from_secs(900), MS);
    let auth = Authenticator::new(users, throttle, CheckPool::new(1, 100 * MS).unwrap());
    // Occupy the authenticator's only worker.
    let (release, wait) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let auth = Arc::new(auth);
    let auth2 = auth.clone();
    let first = tokio::spawn(async move {
        auth2
            .pool()
            .run(move || {
                started_tx.send(()).unwrap();
                let _ = wait.recv();
            })
            .await
    });
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let busy = auth.authenticate(Service::Smtp, ip("192.0.2.1"), "alice@example.org", "right".into()).await;
    assert!(matches!(busy, AuthOutcome::Busy(PoolError::Busy(_))), "{busy:?}");
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    let ok = auth.authenticate(Service::Smtp, ip("192.0.2.1"), "alice@example.org", "right".into()).await;
    assert!(matches!(ok, AuthOutcome::Accepted), "{ok:?}");
    // The success released its reservation too: one wrong password is still checked...
    let wrong = auth.authenticate(Service::Smtp, ip("192.0.2.1"), "alice@example.org", "wrong".into()).await;
    assert!(matches!(wrong, AuthOutcome::Rejected), "{wrong:?}");
    // ...and locks.
    let after = auth.authenticate(Service::Smtp, ip("192.0.2.1"), "alice@example.org", "right".into()).await;
    assert!(matches!(after, AuthOutcome::Locked { .. }), "{after:?}");
}
