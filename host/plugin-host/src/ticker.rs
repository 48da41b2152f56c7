//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while at least
//! one call into a plugin is running, and sleeps otherwise. An always-on 10 ms timer
//! costs more CPU on a VM (~5 ms per second here) than collecting node metrics does.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often the epoch advances during a call; the granularity of timeouts and of
/// yielding a CPU-bound plugin back to the scheduler.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Calls {
    active: usize,
    stop: bool,
}

pub struct Ticker {
    calls: Mutex<Calls>,
    wake: Condvar,
}

/// Held for the duration of one call; the ticker runs while any guard exists.
pub struct Busy(Arc<Ticker>);

impl Ticker {
    /// Starts the ticker thread; `tick` is `Engine::increment_epoch` in production.
    pub fn start(tick: impl Fn() + Send + 'static) -> Arc<Self> {
        let t = Arc::new(Ticker {
            calls: Mutex::default(),
            wake: Condvar::new(),
        });
        let me = t.clone();
        std::thread::Builder::new()
            .name("sonde-epoch".into())
            .spawn(move || me.run(tick))
            .expect("spawn epoch ticker thread");
        t
    }

    fn run(&self, tick: impl Fn()) {
        loop {
            {
                let mut c = self.calls.lock().unwrap();
                while c.active == 0 && !c.stop {
                    c = self.wake.wait(c).unwrap();
                }
                if c.stop {
                    return;
                }
            }
            std::thread::sleep(EPOCH_TICK);
            tick();
        }
    }

    pub fn busy(self: &Arc<Self>) -> Busy {
        let mut c = self.calls.lock().unwrap();
        c.active += 1;
        if c.active == 1 {
            self.wake.notify_one();
        }
        Busy(self.clone())
    }

    pub fn stop(&self) {
        self.calls.lock().unwrap().stop = true;
        self.wake.notify_one();
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.calls.lock().unwrap().active -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn ticks_only_while_a_call_is_running() {
        let n = Arc::new(AtomicUsize::new(0));
        let counter = n.clone();
        let t = Ticker::start(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        std::thread::sleep(EPOCH_TICK * 5);
        assert_eq!(n.load(Ordering::SeqCst), 0, "idle: no ticks");
        let guard = t.busy();
        let start = Instant::now();
        while n.load(Ordering::SeqCst) < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ticker did not run while busy"
            );
            std::thread::sleep(EPOCH_TICK);
        }
        drop(guard);
        // At most the tick already sleeping completes after the call ends.
        std::thread::sleep(EPOCH_TICK * 3);
        let after = n.load(Ordering::SeqCst);
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(n.load(Ordering::SeqCst), after, "idle again: no more ticks");
        t.stop();
    }
}
