extension EdgeHandler {
    /// What `EdgeHandler` is doing with the request in front of it.
    ///
    /// NIO's pipelining assistance delivers one request at a time — its head, body parts and end — and the next
    /// head only after the response's end was written, so the machine needs no queue: a request is either
    /// forwarded to the router whole or answered here whole.
    struct StateMachine {
        enum State: Equatable {
            /// Between requests: the next part is a head.
            case idle
            /// A request the router serves: its parts go on until its end.
            case forwarding
            /// A request answered here, its answer not written yet (a verification waiting for the store);
            /// `requestEnded` once its end was read (and swallowed).
            case verifying(requestEnded: Bool, close: Bool)
            /// Answered before its end arrived: the rest of the request is swallowed.
            case draining
            /// Answered a request that asked to close: the output is closed and nothing more is read.
            case closed
        }

        enum ReadAction: Equatable {
            /// Pass the part on to the router.
            case forward
            /// Answer here (the part was a head this handler answers: a verification or a refusal).
            case answerHere
            /// Drop the part: it belongs to a request answered here.
            case swallow
        }

        enum AnswerAction: Equatable {
            /// Write the answer; close the output after it when `close`.
            case write(close: Bool)
            /// The connection went away while the store answered.
            case drop
        }

        private(set) var state = State.idle

        /// A part arrived. `answersHere` (heads only): the request is one this handler answers; `close`: the
        /// connection closes after the answer.
        mutating func read(_ part: Part, answersHere: Bool = false, close: Bool = false) -> ReadAction {
            switch (state, part) {
            case (.idle, .head):
                if answersHere {
                    state = .verifying(requestEnded: false, close: close)
                    return .answerHere
                }
                state = .forwarding
                return .forward
            case (.idle, .body), (.idle, .end):
                // Only after a parse error, which the router answers: keep its order.
                return .forward
            case (.forwarding, .end):
                state = .idle
                return .forward
            case (.forwarding, _):
                return .forward
            case (.verifying(_, let close), .end):
                state = .verifying(requestEnded: true, close: close)
                return .swallow
            case (.verifying, _):
                return .swallow
            case (.draining, .end):
                state = .idle
                return .swallow
            case (.draining, _), (.closed, _):
                return .swallow
            }
        }

        /// The answer of the request in progress is ready.
        mutating func answered() -> AnswerAction {
            guard case .verifying(let requestEnded, let close) = state else { return .drop }
            if close {
                state = .closed
            } else {
                state = requestEnded ? .idle : .draining
            }
            return .write(close: close)
        }

        /// The channel closed: an answer still to come has nowhere to go.
        mutating func channelClosed() {
            state = .closed
        }

        /// Whether no request is in progress: a parse error now concerns no request the router has, so it is answered
        /// here.
        var isIdle: Bool { state == .idle }

        /// The kind of a request part, without its payload.
        enum Part {
            case head, body, end
        }
    }
}
