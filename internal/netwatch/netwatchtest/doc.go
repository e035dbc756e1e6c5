// Package netwatchtest gives tests network namespaces of their own (Linux,
// as root): a PC whose addresses and routes a test may change without
// touching the machine's. Tests that need one skip elsewhere, and fail
// instead of skipping when CI=true, where they must run.
package netwatchtest
