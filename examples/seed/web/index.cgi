#!/bin/sh
n=$(wget -qO- http://db/cgi-bin/incr) || n="? (db unreachable)"
printf 'Content-Type: text/plain\r\n\r\n'
echo "Hello from $(hostname): this page was seen $n times."
