// Package multihost tests the fleet across hosts on the Docker engine: a
// 3-node NATS cluster with JetStream (deploy/nats's configs and accounts) and
// agents, each in its own container on a network the test creates. Images are
// built locally FROM scratch with static binaries; the agents use the host's
// Python, mounted read-only. The tests kill an agent, stop a NATS node and cut
// an agent off the network. Without Docker they skip, unless
// SNAKEPIT_REQUIRE_DOCKER=1. The package has no code outside its tests.
package multihost
