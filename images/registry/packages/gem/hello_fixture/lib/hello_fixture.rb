module HelloFixture
  def self.hello(name)
    "hello, #{name}, from hello_fixture"
  end
end
