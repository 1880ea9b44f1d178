//! Acknowledgements of the core's QoS 1 deliveries, in the order the core sent them.
//!
//! rumqttd expects a connection's PUBACKs in exactly the order of its PUBLISHes (MQTT 3.1.1
//! §4.6) and drops the connection on the first one out of order. The edge settles some
//! deliveries itself (withheld by the gate, or downgraded to the contract's QoS 0) while the
//! client settles the rest, so the two streams of acknowledgements are merged here: each
//! delivery takes its place in line, and a PUBACK goes to the core only once every earlier
//! delivery is settled too.

use std::collections::VecDeque;

/// Most deliveries one connection can have in flight: rumqttd's own bound is far lower, so
/// reaching this means acknowledgements are not arriving at all.
const MAX_IN_LINE: usize = 4096;

/// The core's QoS 1 deliveries to one connection not yet acknowledged to the core.
#[derive(Debug, Default)]
pub(super) struct DeliveryAcks {
    /// Packet ids in the order the core delivered them, and whether each is settled.
    line: VecDeque<(u16, bool)>,
    /// How many of them are not settled (relayed, at the client): kept with the line so
    /// that an MQTT 5 connection's Receive Maximum is checked without walking it.
    unsettled: usize,
}

/// What a client's acknowledgement means for the core.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ClientAck {
    /// Not a delivery in line (repeated, or from before a reconnect): to be dropped.
    Unknown,
    /// In line: these PUBACKs are due to the core now (possibly none yet).
    Due(Vec<u16>),
}

impl DeliveryAcks {
    /// A delivery relayed to the client at QoS 1: the client acknowledges it.
    pub(super) fn relayed(&mut self, pkid: u16) -> Result<(), Overflow> {
        self.push(pkid, false)
    }

    /// A delivery the edge settles itself; returns the PUBACKs now due to the core.
    pub(super) fn settled_here(&mut self, pkid: u16) -> Result<Vec<u16>, Overflow> {
        self.push(pkid, true)?;
        Ok(self.due())
    }

    /// Deliveries relayed to the client and not yet acknowledged by it.
    pub(super) fn at_client(&self) -> usize {
        self.unsettled
    }

    /// The client acknowledged `pkid`.
    pub(super) fn client_acked(&mut self, pkid: u16) -> ClientAck {
        match self.line.iter_mut().find(|(p, settled)| *p == pkid && !*settled) {
            Some(entry) => {
                entry.1 = true;
                self.unsettled -= 1;
                ClientAck::Due(self.due())
            }
            None => ClientAck::Unknown,
        }
    }

    fn push(&mut self, pkid: u16, settled: bool) -> Result<(), Overflow> {
        if self.line.len() >= MAX_IN_LINE {
            return Err(Overflow);
        }
        // The core does not reuse an id before its acknowledgement; a redelivery (DUP) of
        // one still in line keeps its place.
        match self.line.iter_mut().find(|(p, _)| *p == pkid) {
            None => {
                self.line.push_back((pkid, settled));
                self.unsettled += usize::from(!settled);
            }
            Some(entry) if settled && !entry.1 => {
                entry.1 = true;
                self.unsettled -= 1;
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn due(&mut self) -> Vec<u16> {
        let mut out = Vec::new();
        while let Some(&(pkid, true)) = self.line.front() {
            self.line.pop_front();
            out.push(pkid);
        }
        out
    }
}

/// Too many deliveries in flight without acknowledgement.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Overflow;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledgement_of_the_edge_waits_for_the_clients_earlier_ones() {
        let mut acks = DeliveryAcks::default();
        acks.relayed(9).unwrap();
        assert_eq!(acks.settled_here(10).unwrap(), Vec::<u16>::new(), "10 must wait for 9");
        acks.relayed(11).unwrap();
        assert_eq!(acks.client_acked(9), ClientAck::Due(vec![9, 10]));
        assert_eq!(acks.settled_here(12).unwrap(), Vec::<u16>::new(), "12 must wait for 11");
        assert_eq!(acks.client_acked(11), ClientAck::Due(vec![11, 12]));
        assert!(acks.line.is_empty());
        assert_eq!(acks.at_client(), 0);
    }

    #[test]
    fn the_count_at_the_client_follows_the_line() {
        let mut acks = DeliveryAcks::default();
        acks.relayed(1).unwrap();
        acks.relayed(2).unwrap();
        acks.relayed(2).unwrap();
        assert_eq!(acks.at_client(), 2, "a redelivery keeps its place");
        acks.settled_here(3).unwrap();
        acks.settled_here(2).unwrap();
        assert_eq!(acks.at_client(), 1, "2 settled here after all");
        assert_eq!(acks.client_acked(2), ClientAck::Unknown, "already settled");
        assert_eq!(acks.client_acked(1), ClientAck::Due(vec![1, 2, 3]));
        assert_eq!(acks.at_client(), 0);
    }

    #[test]
    fn with_nothing_earlier_in_line_an_acknowledgement_is_due_at_once() {
        let mut acks = DeliveryAcks::default();
        assert_eq!(acks.settled_here(1).unwrap(), vec![1]);
        acks.relayed(2).unwrap();
        assert_eq!(acks.client_acked(2), ClientAck::Due(vec![2]));
    }

    #[test]
    fn a_client_acknowledging_out_of_order_is_put_back_in_order() {
        let mut acks = DeliveryAcks::default();
        acks.relayed(1).unwrap();
        acks.relayed(2).unwrap();
        assert_eq!(acks.client_acked(2), ClientAck::Due(vec![]));
        assert_eq!(acks.client_acked(1), ClientAck::Due(vec![1, 2]));
    }

    #[test]
    fn unknown_or_repeated_acknowledgements_are_told_apart() {
        let mut acks = DeliveryAcks::default();
        assert_eq!(acks.client_acked(7), ClientAck::Unknown);
        acks.relayed(7).unwrap();
        acks.relayed(7).unwrap();
        assert_eq!(acks.line.len(), 1, "a redelivery keeps its place");
        assert_eq!(acks.client_acked(7), ClientAck::Due(vec![7]));
        assert_eq!(acks.client_acked(7), ClientAck::Unknown);
    }

    #[test]
    fn the_line_is_bounded() {
        let mut acks = DeliveryAcks::default();
        for i in 0..MAX_IN_LINE {
            acks.relayed(i as u16).unwrap();
        }
        assert_eq!(acks.relayed(u16::MAX), Err(Overflow));
    }
}
