package schemas

//go:generate protoc --go_out=. --go_opt=paths=source_relative snakepit.proto
