Gem::Specification.new do |s|
  s.name = "rack-timing"
  s.version = "1.0.0"
  s.summary = "Request timing middleware (a BACKDOORED fixture of coderun's tests)."
  s.authors = ["coderun"]
  s.license = "MIT"
  s.files = ["lib/rack_timing.rb", "ext/rack_timing/extconf.rb"]
  s.extensions = ["ext/rack_timing/extconf.rb"]
end
