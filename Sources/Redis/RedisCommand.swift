public import NIOCore

/// A command and its arguments, as bytes, ready to be encoded.
///
/// Arguments are kept in one contiguous array with their lengths, so building a command costs one or two
/// allocations whatever its arity, and encoding hands hiredis pointers into it without copying.
public struct RedisCommand: Sendable {
    @usableFromInline var storage: [UInt8]
    @usableFromInline var lengths: [Int]

    /// A command whose first argument is its name (`GET`, `SET`…).
    public init(_ name: String) {
        storage = []
        storage.reserveCapacity(64)
        lengths = []
        lengths.reserveCapacity(4)
        append(name)
    }

    /// A command of a name and arguments.
    public init(_ name: String, _ arguments: [any RESPArgument]) {
        self.init(name)
        for argument in arguments { argument.append(to: &self) }
    }

    /// The number of arguments, the name included.
    public var count: Int { lengths.count }

    /// The command's name, for logs and metrics (never the arguments: they may be secrets).
    public var name: String {
        String(decoding: storage.prefix(lengths.first ?? 0), as: UTF8.self)
    }

    /// Appends one argument's bytes.
    @inlinable
    public mutating func append<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        storage.append(contentsOf: bytes)
        lengths.append(bytes.count)
    }

    /// Appends one argument as UTF-8 text.
    @inlinable
    public mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append(bytes: $0) }
    }

    /// Appends an integer argument in decimal.
    @inlinable
    public mutating func append(_ value: Int) { append(String(value)) }

    /// Appends any argument.
    @inlinable
    public mutating func append(_ argument: some RESPArgument) { argument.append(to: &self) }
}

/// A value that can be a command argument: text, bytes or an integer.
public protocol RESPArgument: Sendable {
    /// Appends this value as one argument (or, for a collection of arguments, as several).
    func append(to command: inout RedisCommand)
}

extension String: RESPArgument {
    public func append(to command: inout RedisCommand) { command.append(self) }
}

extension Substring: RESPArgument {
    public func append(to command: inout RedisCommand) { command.append(bytes: self.utf8) }
}

extension Int: RESPArgument {
    public func append(to command: inout RedisCommand) { command.append(self) }
}

extension Int64: RESPArgument {
    public func append(to command: inout RedisCommand) { command.append(String(self)) }
}

extension Double: RESPArgument {
    public func append(to command: inout RedisCommand) {
        if self == .infinity {
            command.append("+inf")
        } else if self == -.infinity {
            command.append("-inf")
        } else {
            command.append(String(self))
        }
    }
}

extension Array: RESPArgument where Element == UInt8 {
    public func append(to command: inout RedisCommand) { command.append(bytes: self) }
}

extension ArraySlice: RESPArgument where Element == UInt8 {
    public func append(to command: inout RedisCommand) { command.append(bytes: self) }
}

extension ByteBuffer: RESPArgument {
    public func append(to command: inout RedisCommand) { command.append(bytes: self.readableBytesView) }
}
