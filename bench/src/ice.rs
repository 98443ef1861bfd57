//! iceoryx2 (0.10) publish-subscribe of `[u8]`: one service each way. It
//! builds without libclang on Linux (its POSIX layer is written against
//! libc; bindgen runs only for QNX), so it is part of every build and run.

use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections as _;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;

use crate::transport::{Cfg, Endpoint, Pending};
use crate::util::{err, Res};

type Svc = PubSub<ipc::Service, [u8], ()>;

/// One direction's publisher and the other's subscriber. iceoryx2's
/// subscriber does not block: `recv` polls it (spinning), as iceoryx2's
/// own benchmarks do.
struct IceEnd {
    _node: Node<ipc::Service>,
    svcs: Vec<Svc>,
    out_svc: usize,
    publisher: Publisher<ipc::Service, [u8], ()>,
    subscriber: Subscriber<ipc::Service, [u8], ()>,
    connected: bool,
}

fn service(node: &Node<ipc::Service>, name: &str, cfg: &Cfg) -> Res<Svc> {
    let name: ServiceName = name
        .try_into()
        .map_err(|e| format!("iceoryx2 name: {e:?}"))?;
    node.service_builder(&name)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(cfg.cap.max(2))
        .subscriber_max_borrowed_samples(2)
        .history_size(0)
        .open_or_create()
        .map_err(|e| format!("iceoryx2 service: {e:?}").into())
}

fn end(cfg: &Cfg, base: &str, side: usize) -> Res<IceEnd> {
    // Its defaults are what is measured: no need to say so on every start.
    set_log_level(LogLevel::Error);
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| format!("iceoryx2 node: {e:?}"))?;
    let svcs = vec![
        service(&node, &format!("{base}/ab"), cfg)?,
        service(&node, &format!("{base}/ba"), cfg)?,
    ];
    let publisher = svcs[side]
        .publisher_builder()
        .initial_max_slice_len(cfg.size.max(1))
        .max_loaned_samples(2)
        // Lossless, like every other contender: a full subscriber buffer
        // makes the publisher retry until the sample is delivered.
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(|e| format!("iceoryx2 publisher: {e:?}"))?;
    let subscriber = svcs[1 - side]
        .subscriber_builder()
        .buffer_size(cfg.cap.max(2))
        .create()
        .map_err(|e| format!("iceoryx2 subscriber: {e:?}"))?;
    Ok(IceEnd {
        _node: node,
        svcs,
        out_svc: side,
        publisher,
        subscriber,
        connected: false,
    })
}

impl Endpoint for IceEnd {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        if !self.connected {
            // A sample sent before the peer subscribed is lost: wait for it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.svcs[self.out_svc]
                .dynamic_config()
                .number_of_subscribers()
                == 0
            {
                if Instant::now() > deadline {
                    return err("iceoryx2: no subscriber");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            self.publisher
                .update_connections()
                .map_err(|e| format!("iceoryx2 connect: {e:?}"))?;
            self.connected = true;
        }
        let s = self
            .publisher
            .loan_slice_uninit(msg.len())
            .map_err(|e| format!("iceoryx2 loan: {e:?}"))?;
        let s = s.write_from_slice(msg);
        s.send().map_err(|e| format!("iceoryx2 send: {e:?}"))?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        loop {
            if let Some(s) = self
                .subscriber
                .receive()
                .map_err(|e| format!("iceoryx2 receive: {e:?}"))?
            {
                let p = s.payload();
                if p.len() != buf.len() {
                    return err("iceoryx2: wrong length");
                }
                buf.copy_from_slice(p);
                return Ok(());
            }
            std::hint::spin_loop();
        }
    }
}

impl IceEnd {
    /// Each side sends one message and takes the other's. A publisher
    /// whose subscriber has not yet connected its side of the connection
    /// drops what does not fit in the buffer, even when told to retry: a
    /// producer that started streaming at once lost messages. Once both
    /// sides have received, both connections are up.
    fn handshake(mut self, size: usize) -> Res<IceEnd> {
        let mut hello = vec![0u8; size];
        self.send(&hello)?;
        self.recv(&mut hello)?;
        Ok(self)
    }
}

/// Side A: creates both services (iceoryx2 names may not hold '-').
pub fn prepare_a(cfg: &Cfg) -> Res<(String, Pending)> {
    let base = cfg.name.replace('-', "_");
    let e = end(cfg, &base, 0)?;
    let size = cfg.size;
    Ok((
        base,
        Box::new(move || Ok(Box::new(e.handshake(size)?) as _)),
    ))
}

/// Side B: opens them.
pub fn open_b(cfg: &Cfg) -> Res<Box<dyn Endpoint>> {
    Ok(Box::new(end(cfg, &cfg.token, 1)?.handshake(cfg.size)?))
}
