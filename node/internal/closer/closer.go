// Package closer holds the shutdown idiom of the node's services.
//
// A service's Close is idempotent and a second call, concurrent or later,
// waits for the first to finish and returns its result: Once gives that.
// A constructor that starts several parts unwinds through one Stack: it
// pushes the close of each part as the part starts, closes the stack when
// a later part fails, and hands the stack to the Close of what it built.
package closer

import (
	"errors"
	"sync"
)

// Once runs a close function once. The zero value is ready to use.
type Once struct {
	once sync.Once
	err  error
}

// Do runs f if no call of Do has, and returns f's result. A call made
// while f runs waits for it to return.
func (o *Once) Do(f func() error) error {
	o.once.Do(func() { o.err = f() })
	return o.err
}

// Stack is a stack of close functions, closed the last pushed first. The
// zero value is an empty stack. It is not safe for concurrent use: one
// constructor builds it, one Close closes it.
type Stack struct {
	fs []func() error
}

// Push adds f on top of the stack.
func (s *Stack) Push(f func() error) { s.fs = append(s.fs, f) }

// PushFunc adds f, which returns nothing, on top of the stack.
func (s *Stack) PushFunc(f func()) { s.Push(func() error { f(); return nil }) }

// Close calls every function of the stack, the last pushed first, and
// empties it. It returns the errors joined (nil when none failed).
func (s *Stack) Close() error {
	var errs []error
	for i := len(s.fs) - 1; i >= 0; i-- {
		errs = append(errs, s.fs[i]())
	}
	s.fs = nil
	return errors.Join(errs...)
}
