module github.com/spinebridge/spinebridge

go 1.26
